// A kubeconfig the CLI cannot use is reported as such, naming the file and the fix, before anything
// else happens: the CLI run as a user runs it, with KUBECONFIG pointing at a missing file and at a
// broken one. A session that never started says nothing about ending.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const home = mkdtempSync(join(tmpdir(), 'detour-kubeconfig-'));

/** `detour <args> --json` with KUBECONFIG=`kubeconfig`: its exit code and its JSON lines on stderr. */
function detour(kubeconfig: string, args: string[]) {
  const run = spawnSync(process.execPath, [main, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: home, KUBECONFIG: kubeconfig },
    timeout: 30_000,
  });
  const lines = run.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { event?: string; code?: string; message?: string });
  return { status: run.status, lines, failure: lines.find((line) => line.event === 'failed') };
}

describe('kubeconfig errors', () => {
  after(() => rmSync(home, { recursive: true, force: true }));
  const exec = ['exec', '--target', 'deploy/orders', '--header', 'x-dev=a', '--json', '--', 'true'];

  it('KUBECONFIG naming a missing file: DETOUR_NO_KUBECONFIG names it, and no session "ended"', () => {
    const missing = join(home, 'no-such-kubeconfig.yaml');
    const { status, lines, failure } = detour(missing, exec);
    assert.equal(status, 2);
    assert.equal(failure?.code, 'DETOUR_NO_KUBECONFIG');
    assert.equal(
      failure?.message,
      `the kubeconfig ${missing} does not exist: point KUBECONFIG at your kubeconfig (as for kubectl), or pass --agent HOST:PORT to use an agent directly`,
    );
    assert.deepEqual(
      lines.filter((line) => line.event?.startsWith('session.')),
      [],
      'a session that never started neither ended nor was undone',
    );
  });

  it('a kubeconfig that is not valid YAML: DETOUR_BAD_KUBECONFIG names it and the check to run', () => {
    const broken = join(home, 'broken.yaml');
    writeFileSync(broken, 'apiVersion: v1\nkind: Config\nclusters: [oops\n');
    const { status, failure } = detour(broken, ['status', '--json']);
    assert.equal(status, 2);
    assert.equal(failure?.code, 'DETOUR_BAD_KUBECONFIG');
    assert.match(
      failure?.message ?? '',
      new RegExp(`^the kubeconfig ${broken} could not be read: .+; check it with \`kubectl config view\`$`),
    );
  });
});
