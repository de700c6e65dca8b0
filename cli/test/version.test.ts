import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import {
  FrameType,
  PROTOCOL_VERSION,
  TunnelCode,
  TunnelConnection,
  TunnelVersionError,
} from '@detour/router/tunnel/index';
import { frameJson, jsonFrame, scriptedAgent } from '@detour/router/tunnel/scripted-peer';
import { parse } from 'yaml';
import { waitFor } from '../../tests/support/wait.ts';
import { AgentTunnel, dial } from '../src/session/agent-tunnel.ts';

const main = new URL('../src/main.ts', import.meta.url).pathname;
const native = new URL(
  `../../layer-preload/native/out/${process.platform}-${process.arch}/libdetour.so`,
  import.meta.url,
).pathname;
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

  it('detour version --json: the same as one object, with the layer files it uses', () => {
    assert.deepEqual(JSON.parse(detour('version', '--json')), {
      version,
      tunnelProtocol: PROTOCOL_VERSION,
      agentImage: `detour/agent:${version}`,
      layer: {
        node: new URL('../../layer-preload/src/register.ts', import.meta.url).pathname,
        native: existsSync(native) ? native : null,
      },
    });
  });

  it('manifests/agent pins the agent image of this release (kustomize images:)', () => {
    const kustomization = parse(
      readFileSync(new URL('../../manifests/agent/kustomization.yaml', import.meta.url), 'utf8'),
    ) as { images: Array<{ name: string; newTag: string }> };
    assert.deepEqual(kustomization.images, [{ name: 'detour/agent', newTag: version }]);
  });

  it('the agent and the packages in both bundles are released with the CLI: one version', () => {
    for (const folder of ['agent', 'router', 'mesh-adapters', 'layer-preload'])
      assert.equal(packageVersion(folder), version, `${folder}/package.json`);
  });
});

describe('the CLI and an agent of another tunnel protocol version', () => {
  const version = packageVersion('cli');

  async function refusedBy(agent: { version: number; release: string }, namespace?: string) {
    const scripted = await scriptedAgent(() =>
      jsonFrame(FrameType.goaway, { code: TunnelCode.version, message: 'refused', ...agent }),
    );
    const tunnel = new AgentTunnel({
      address: `127.0.0.1:${scripted.port}`,
      connect: () => dial('127.0.0.1', scripted.port),
      token: 't',
      client: 'dev@laptop',
      ...(namespace ? { namespace } : {}),
      onConnected: async () => {},
      onStream: () => {},
    });
    const error = await tunnel.start().then(
      () => assert.fail('the CLI accepted an agent of another version'),
      (failure: Error & { code?: string }) => failure,
    );
    const [hello] = await scripted.received;
    scripted.close();
    assert.equal(frameJson(hello).release, version, 'the CLI says its release in the hello');
    assert.equal(error.code, TunnelCode.version);
    return error.message;
  }

  it('an older agent: update it with `detour install -n NS`, naming the image of this release', async () => {
    assert.equal(
      await refusedBy({ version: PROTOCOL_VERSION - 1, release: '0.0.1' }, 'staging'),
      `the agent speaks tunnel protocol v${PROTOCOL_VERSION - 1} (detour 0.0.1) but this CLI speaks v${PROTOCOL_VERSION} (detour ${version}): update the agent to this CLI’s release: \`detour install -n staging\` (image detour/agent:${version}); or use a CLI of detour 0.0.1`,
    );
  });

  it('a newer agent: the CLI of its release, or this release’s agent back', async () => {
    assert.equal(
      await refusedBy({ version: PROTOCOL_VERSION + 1, release: '9.0.0' }, 'staging'),
      `the agent speaks tunnel protocol v${PROTOCOL_VERSION + 1} (detour 9.0.0) but this CLI speaks v${PROTOCOL_VERSION} (detour ${version}): use a CLI of detour 9.0.0 (npm install -g detour-9.0.0.tgz); or put the agent of this CLI’s release back: \`detour install -n staging\` (image detour/agent:${version})`,
    );
  });

  it('an agent reached by address (no namespace): the image to run', async () => {
    assert.match(
      await refusedBy({ version: PROTOCOL_VERSION - 1, release: '0.0.1' }),
      new RegExp(`update the agent to this CLI’s release: run the agent image detour/agent:${version};`),
    );
  });
});

describe('a session whose agent is replaced by one of another protocol version', () => {
  it('says so once, with both versions and the fix, while it keeps reconnecting', async () => {
    // One address: the first connection reaches an agent of this version, the later ones a newer one.
    let accepted: TunnelConnection | undefined;
    const server = net.createServer((socket) => {
      if (!accepted)
        void TunnelConnection.accept(socket, { tokens: ['t'], agent: 'old' }).then((tunnel) => {
          accepted = tunnel;
        });
      else
        socket.end(
          jsonFrame(FrameType.goaway, {
            code: TunnelCode.version,
            message: 'refused',
            version: PROTOCOL_VERSION + 1,
            release: '9.0.0',
          }),
        );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const tunnel = new AgentTunnel({
      address: `127.0.0.1:${port}`,
      connect: () => dial('127.0.0.1', port),
      token: 't',
      client: 'dev@laptop',
      namespace: 'staging',
      onConnected: async () => {},
      onStream: () => {},
    });
    const lost: Error[] = [];
    tunnel.on('lost', (reason) => lost.push(reason));
    await tunnel.start();
    accepted?.close();
    await waitFor(
      { what: 'the refusal of the new agent', timeoutMs: 10_000, intervalMs: 20 },
      () => lost.length === 2,
    );
    tunnel.stop();
    server.close();
    assert.equal(lost[0]?.message, 'the tunnel was closed');
    assert.ok(lost[1] instanceof TunnelVersionError);
    assert.match(
      lost[1].message,
      /^the agent speaks tunnel protocol v\d+ \(detour 9\.0\.0\) but this CLI speaks .*: use a CLI of detour 9\.0\.0 .*`detour install -n staging`/,
    );
  });
});
