// The set-up scripts on a machine as a new user has it: an empty HOME and detour cache, the
// machine's own PATH and nothing else in the environment (env -i). Node 24 must arrive; a step that
// fails must say which step, with the failing command's own output and the fix.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';

const root = new URL('../..', import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), 'detour-setup-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

// The machine's PATH: this test runs under scripts/node-env.sh, whose Node 24 (in the detour cache) is not the machine's.
const cache = process.env.DETOUR_CACHE ?? join(homedir(), '.cache', 'detour');
const machinePath = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((entry) => dirname(dirname(entry)) !== cache)
  .join(delimiter);

/** bash -c script with env -i: only PATH, HOME and DETOUR_CACHE (both empty folders). */
function cold(name: string, script: string, path: string) {
  const home = join(scratch, name);
  const result = spawnSync('/bin/bash', ['-c', script], {
    cwd: root,
    encoding: 'utf8',
    env: { PATH: path, HOME: home, DETOUR_CACHE: join(home, 'cache') },
    timeout: 300_000,
  });
  return { ...result, home };
}

/** A folder of executables: fakes (name -> shell script body) and links to the machine's own tools. */
function fakeBin(name: string, fakes: Record<string, string>, machineTools: string[] = []): string {
  const dir = join(scratch, `${name}-bin`);
  mkdirSync(dir, { recursive: true });
  for (const [tool, body] of Object.entries(fakes)) {
    writeFileSync(join(dir, tool), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, tool), 0o755);
  }
  for (const tool of machineTools) {
    const found = spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    assert.ok(found, `${tool} is on this machine's PATH (coreutils)`);
    symlinkSync(found, join(dir, tool));
  }
  return dir;
}

/** Sources `script` under set -euo pipefail with `bin` first on PATH; it must fail and stop the caller. */
function failedSourcing(name: string, script: string, bin: string) {
  const run = cold(name, `set -euo pipefail; . ${script}; echo reached`, `${bin}${delimiter}${machinePath}`);
  assert.notEqual(run.status, 0, `${script} succeeded:\n${run.stderr}`);
  assert.doesNotMatch(run.stdout, /reached/, 'the calling script stops');
  return run;
}

const machineNodeMajor = Number(
  spawnSync('node', ['-p', 'process.versions.node.split(".")[0]'], {
    encoding: 'utf8',
    env: { PATH: machinePath },
  }).stdout || 0,
);

describe('scripts/node-env.sh with an empty HOME and cache', () => {
  it(`brings Node 24 (this machine's node is ${machineNodeMajor || 'missing'})`, () => {
    const run = cold(
      'node',
      'set -euo pipefail; . scripts/node-env.sh; node --version; command -v node',
      machinePath,
    );
    assert.equal(run.status, 0, `node-env.sh failed; its message:\n${run.stderr}`);
    const [version, node] = run.stdout.trim().split('\n');
    assert.match(String(version), /^v24\./, run.stderr);
    if (machineNodeMajor < 24) {
      assert.ok(node?.startsWith(join(run.home, 'cache', 'node-24.')), `node from the fresh cache: ${node}`);
      assert.match(run.stderr, /older than 24; fetching node-linux-\w+@24 from the npm registry/);
    } else {
      assert.equal(run.stderr, '', 'the machine has Node 24: nothing fetched, nothing said');
    }
  });

  it('names the failed step, shows npm’s own output and the fix when npm cannot fetch Node', () => {
    // An old node (so the fetch is needed whatever this machine has) and an npm that cannot reach the registry.
    const bin = fakeBin('npm-fails', {
      node: 'case "$1" in -p) echo 20 ;; *) echo v20.0.0 ;; esac',
      npm: 'echo "npm error code EAI_AGAIN" >&2; echo "npm error request to https://registry.npmjs.org/ failed" >&2; exit 1',
    });
    const run = failedSourcing('npm-fails', 'scripts/node-env.sh', bin);
    assert.match(run.stderr, /npm error code EAI_AGAIN/, 'npm’s output is shown');
    assert.match(
      run.stderr,
      /step 'npm pack node-linux-\w+@24' failed \(npm's output above\): check that the npm registry is reachable \(npm ping\)/,
    );
  });
});

describe('scripts/go-env.sh', () => {
  it('names the failed step, shows curl’s own output and the fix when Go cannot be fetched', () => {
    // An old go (so the fetch is needed whatever this machine has) and a curl that cannot reach the proxy.
    const bin = fakeBin('curl-fails', {
      go: 'echo "go version go1.19.8 linux/amd64"',
      curl: 'echo "curl: (6) Could not resolve host: proxy.golang.org" >&2; exit 6',
    });
    const run = failedSourcing('curl-fails', 'scripts/go-env.sh', bin);
    assert.match(
      run.stderr,
      /go \(go1\.19\.8\) is older than 1\.26; fetching golang\.org\/toolchain@v0\.0\.1-go1\.26\.\d+\.linux-\w+/,
    );
    assert.match(run.stderr, /curl: \(6\) Could not resolve host/, 'curl’s output is shown');
    assert.match(
      run.stderr,
      /step 'fetch golang\.org\/toolchain@[^']+' failed \(curl's output above\): check that the Go module proxy is reachable/,
    );
  });
});

describe('scripts/setup.sh and the cluster build name the step that failed', () => {
  it('setup.sh: apt-get’s own output and the step, instead of silence', () => {
    // A PATH where every tool is missing but the two the script itself runs: the apt step must run.
    const bin = fakeBin(
      'apt-fails',
      {
        'apt-get':
          'echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242" >&2; exit 100',
      },
      ['dirname', 'basename'],
    );
    const run = cold('apt-fails', '/bin/bash scripts/setup.sh', bin);
    assert.equal(run.status, 100, run.stderr);
    assert.match(run.stderr, /E: Could not get lock/, 'apt-get’s output is shown');
    assert.match(
      run.stderr,
      /setup: step 'apt-get update' failed \(exit 100\): check that the Debian mirrors .* are reachable/,
    );
  });

  it('cluster-build.sh: a failing go build names the component, with go’s output and the fix', () => {
    const bin = fakeBin('go-fails', {
      go: 'case "$1" in version) echo "go version go1.26.8 linux/amd64" ;; *) echo "go: github.com/example/mod@v1.0.0: dial tcp: lookup proxy.golang.org: no such host" >&2; exit 1 ;; esac',
    });
    const run = cold('go-fails', 'bash scripts/cluster-build.sh etcd', `${bin}${delimiter}${machinePath}`);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /lookup proxy.golang.org: no such host/);
    assert.match(
      run.stderr,
      /cluster-build: step 'build etcd [\d.]+' failed \(exit 1\): go's output above says why: check that the Go module proxy is reachable/,
    );
  });
});
