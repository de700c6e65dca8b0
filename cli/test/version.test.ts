import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { PROTOCOL_VERSION } from '@detour/router/tunnel/protocol';

const main = new URL('../src/main.ts', import.meta.url).pathname;
const packageVersion = (folder: string): string =>
  (
    JSON.parse(readFileSync(new URL(`../../${folder}/package.json`, import.meta.url), 'utf8')) as {
      version: string;
    }
  ).version;
const detour = (...args: string[]) => execFileSync(process.execPath, [main, ...args], { encoding: 'utf8' });

describe('detour --version', () => {
  const version = packageVersion('cli');

  it('prints the CLI version, the tunnel protocol and the agent image tagged with that version', () => {
    const line = `detour ${version} (tunnel protocol v${PROTOCOL_VERSION}, agent image detour/agent:${version})\n`;
    assert.equal(detour('--version'), line);
    assert.equal(detour('version'), line);
  });

  it('detour version --json: the same as one object', () => {
    assert.deepEqual(JSON.parse(detour('version', '--json')), {
      version,
      tunnelProtocol: PROTOCOL_VERSION,
      agentImage: `detour/agent:${version}`,
    });
  });

  it('the agent and the packages in both bundles are released with the CLI: one version', () => {
    for (const folder of ['agent', 'router', 'mesh-adapters', 'layer-preload'])
      assert.equal(packageVersion(folder), version, `${folder}/package.json`);
  });
});
