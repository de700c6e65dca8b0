// What `detour exec` and `detour up` are told to run is checked before anything happens: the agent
// here is an address nothing listens on, so any error but the one asked for means the CLI went
// ahead (lease, tunnel, route) before looking at its command.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const session = [
  '--agent',
  '127.0.0.1:1',
  '--token',
  't',
  '--header',
  'x-dev=me',
  '--port',
  '8080',
  '--json',
];

function detour(args: string[]): { status: number | null; code: unknown; message: string } {
  const result = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 20_000 });
  const failure = JSON.parse(result.stderr.trim().split('\n').at(-1) ?? '{}') as {
    code?: unknown;
    message?: string;
  };
  return { status: result.status, code: failure.code, message: failure.message ?? result.stderr };
}

describe('the command detour exec runs, checked first', () => {
  const dir = mkdtempSync(join(tmpdir(), 'detour-cmd-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('exec with no command after --: DETOUR_NO_COMMAND, with an example', () => {
    const result = detour(['exec', ...session]);
    assert.equal(result.status, 2);
    assert.equal(result.code, 'DETOUR_NO_COMMAND', result.message);
    assert.match(result.message, /-- npm start/);
  });

  it('exec of a name PATH does not have: DETOUR_COMMAND_NOT_FOUND naming it', () => {
    const result = detour(['exec', ...session, '--', 'detour-no-such-command', '--flag']);
    assert.equal(result.status, 2);
    assert.equal(result.code, 'DETOUR_COMMAND_NOT_FOUND', result.message);
    assert.match(result.message, /^detour-no-such-command: no such command on PATH \(.*\): check its name/);
  });

  it('exec of a path that is not an executable file: DETOUR_COMMAND_NOT_FOUND naming the path', () => {
    const script = join(dir, 'app.js');
    writeFileSync(script, 'console.log(1)\n');
    const result = detour(['exec', ...session, '--', script]);
    assert.equal(result.code, 'DETOUR_COMMAND_NOT_FOUND', result.message);
    assert.match(result.message, new RegExp(`^${script} is not an executable file: .*-- node ${script}`));
  });

  it('exec of an executable goes on to the session (here: no agent to reach)', () => {
    const script = join(dir, 'run.sh');
    writeFileSync(script, '#!/bin/sh\ntrue\n');
    chmodSync(script, 0o755);
    for (const command of [script, 'true']) {
      const result = detour(['exec', ...session, '--', command]);
      assert.equal(result.code, 'DETOUR_AGENT_UNREACHABLE', result.message);
    }
  });

  it('up with a command: refused, pointing at detour env and detour exec', () => {
    const result = detour(['up', ...session, '--', 'npm', 'start']);
    assert.equal(result.status, 2);
    assert.equal(result.code, 'DETOUR_BAD_OPTION', result.message);
    assert.match(
      result.message,
      /detour up runs no command \(it was given npm start\).*`detour exec -- npm start`/,
    );
  });
});
