// The CLI as a team installs it: `npm run pack` writes dist/detour-<version>.tgz, `npm install -g`
// puts it in a fresh prefix (offline: the package bundles everything), and that installed binary,
// not this checkout's sources, runs `detour --version`, `kubectl detour --version` with the
// cluster's kubectl, and the main flow of exec-orders.test.ts as a kubectl plugin
// (`kubectl detour exec --target deploy/orders -n staging --header x-dev=dev-a ...`).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PROTOCOL_VERSION } from '@detour/router/tunnel/protocol';
import { binaryPath, repoRoot } from '../cluster/paths.ts';

const version = (
  JSON.parse(readFileSync(join(repoRoot, 'cli', 'package.json'), 'utf8')) as { version: string }
).version;
const tarball = join(repoRoot, 'dist', `detour-${version}.tgz`);

describe('the detour package, installed with npm install -g', () => {
  let prefix: string;
  let installed: string;
  let env: NodeJS.ProcessEnv;

  before(() => {
    execFileSync('npm', ['run', '-s', 'pack'], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
    prefix = mkdtempSync(join(tmpdir(), 'detour-prefix-'));
    // --offline: the tarball needs nothing from a registry.
    execFileSync(
      'npm',
      ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, tarball],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    installed = join(prefix, 'lib', 'node_modules', 'detour');
    env = { ...process.env, PATH: `${join(prefix, 'bin')}${delimiter}${process.env.PATH}` };
  });
  after(() => rmSync(prefix, { recursive: true, force: true }));

  const run = (command: string, args: string[]) =>
    execFileSync(command, args, { env, cwd: tmpdir(), encoding: 'utf8' });
  /** The layer files the installed CLI uses, as `detour version --json` says. */
  const layers = () =>
    (JSON.parse(run('detour', ['version', '--json'])) as { layer: { node: string; native: string } }).layer;
  const versionLine = `detour ${version} (tunnel protocol v${PROTOCOL_VERSION}, agent image detour/agent:${version})\n`;

  it('detour --version: the CLI version, the tunnel protocol and the agent image', () => {
    assert.equal(run(join(prefix, 'bin', 'detour'), ['--version']), versionLine);
    assert.equal(layers().node, join(installed, 'dist', 'register.mjs'), 'the Node layer beside the bundle');
    assert.equal(
      layers().native,
      join(installed, 'native', 'out', `${process.platform}-${process.arch}`, 'libdetour.so'),
      'the native layer in the package (scripts/setup.sh builds it: bash layer-preload/native/build.sh)',
    );
  });

  it('its layers load from the package: node --require the Node layer, LD_PRELOAD the native one', () => {
    const { node, native } = layers();
    assert.equal(
      run(process.execPath, ['--require', node, '-p', '"node layer loaded"']),
      'node layer loaded\n',
    );
    assert.equal(
      execFileSync('/bin/sh', ['-c', 'echo native layer loaded'], {
        env: { ...env, LD_PRELOAD: native },
        encoding: 'utf8',
      }),
      'native layer loaded\n',
    );
  });

  it('is a bundle: no TypeScript, no workspace packages, no dependencies', () => {
    const files = readdirSync(installed, { recursive: true, encoding: 'utf8' });
    assert.deepEqual(
      files.filter((file) => file.endsWith('.ts')),
      [],
    );
    assert.ok(!existsSync(join(installed, 'node_modules')), 'nothing installed beside it');
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
    assert.deepEqual(manifest.bin, { detour: 'dist/detour.mjs', 'kubectl-detour': 'dist/detour.mjs' });
    assert.equal(manifest.dependencies, undefined);
    assert.ok(
      existsSync(join(installed, 'manifests', 'agent', 'kustomization.yaml')),
      'what detour install applies',
    );
  });

  it('kubectl detour --version: a kubectl plugin, with the cluster’s kubectl', () => {
    assert.equal(run(binaryPath('kubectl'), ['detour', '--version']), versionLine);
  });

  it('the main flow of the e2e (exec-orders.test.ts) with `kubectl detour` from the package', async () => {
    // The same suite, its detour command swapped (tests/e2e/support.ts detourCommand).
    const suite = spawn(
      process.execPath,
      [
        '--test',
        '--test-reporter=tap',
        '--test-name-pattern=the main flow',
        join(repoRoot, 'tests', 'e2e', 'exec-orders.test.ts'),
      ],
      {
        cwd: repoRoot,
        // NODE_TEST_CONTEXT: set for files this runner started; the inner runner must report as TAP, not to us.
        env: {
          ...env,
          NODE_TEST_CONTEXT: undefined,
          DETOUR_E2E_CLI: JSON.stringify([binaryPath('kubectl'), 'detour']),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    suite.stdout.on('data', (chunk: Buffer) => {
      output += chunk;
    });
    suite.stderr.on('data', (chunk: Buffer) => {
      output += chunk;
    });
    const [code] = (await once(suite, 'close')) as [number | null];
    assert.equal(code, 0, output);
    assert.match(output, /# pass 3\n/, output);
    assert.match(output, /# fail 0\n/, output);
    assert.ok(
      output.includes(`# detour command: ${JSON.stringify([binaryPath('kubectl'), 'detour'])}`),
      `the suite ran kubectl detour, not the sources:\n${output}`,
    );
    for (const line of output.split('\n'))
      if (/served locally: \d+ ms|reverted by the agent: \d+ ms|live, seen by/.test(line))
        console.log(line.replace(/^#\s*\\?#\s*/, '# '));
  });
});
