// Every command's flags go through parseFlags: kubectl's `-o json` is `--json` wherever a command
// has `--json`, a bad flag is DETOUR_BAD_FLAG naming it, and what follows `--` is the wrapped
// command's, never detour's. The last test runs the CLI itself as a user would.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InvalidInputError } from '@detour/router/errors';
import { parseFlags, wantsJson } from '../src/command-flags.ts';

const withJson = { json: { type: 'boolean' }, namespace: { type: 'string', short: 'n' } } as const;

describe('command flags', () => {
  for (const spelling of [['-o', 'json'], ['-ojson'], ['--output', 'json'], ['--output=json'], ['--json']]) {
    it(`${spelling.join(' ')} asks for JSON`, () => {
      const { values } = parseFlags(['-n', 'staging', ...spelling], withJson);
      assert.deepEqual({ ...values }, { namespace: 'staging', json: true });
      assert.equal(wantsJson(['status', ...spelling]), true);
    });
  }

  it('another -o value is refused, naming it and the outputs there are', () => {
    assert.throws(
      () => parseFlags(['-o', 'yaml'], withJson),
      (error: unknown) =>
        error instanceof InvalidInputError &&
        error.code === 'DETOUR_BAD_FLAG' &&
        error.message ===
          '-o yaml is not an output detour has: it prints text, or JSON with -o json (or --json)',
    );
  });

  it('a command without --json has no -o either', () => {
    assert.throws(
      () => parseFlags(['-o', 'json'], { session: { type: 'string' } }),
      (error: unknown) =>
        error instanceof InvalidInputError &&
        error.code === 'DETOUR_BAD_FLAG' &&
        /Unknown option '-o'; run `detour help` for the flags$/.test(error.message),
    );
  });

  it('positionals only where the command takes them', () => {
    assert.deepEqual(parseFlags(['pay', '--json'], withJson, { positionals: true }).positionals, ['pay']);
    assert.throws(() => parseFlags(['pay'], withJson), /Unexpected argument 'pay'/);
  });

  it('flags after -- belong to the wrapped command', () => {
    assert.equal(
      wantsJson(['exec', '--target', 'deploy/orders', '--', 'kubectl', 'get', 'pods', '-o', 'json']),
      false,
    );
    assert.equal(wantsJson(['exec', '--json', '--', 'tool']), true);
    assert.equal(wantsJson(['status', '-o', 'wide']), false);
  });

  it('the CLI: `detour version -o json` prints JSON, and a bad -o fails with exit 2 in JSON', () => {
    const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
    const version = spawnSync(process.execPath, [main, 'version', '-o', 'json'], { encoding: 'utf8' });
    assert.equal(version.status, 0, version.stderr);
    assert.equal(typeof (JSON.parse(version.stdout) as { version?: unknown }).version, 'string');
    const bad = spawnSync(process.execPath, [main, 'status', '--json', '-o', 'yaml'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    const failure = JSON.parse(bad.stderr.trim().split('\n').at(-1) ?? '') as {
      code?: string;
      message?: string;
    };
    assert.equal(failure.code, 'DETOUR_BAD_FLAG');
    assert.match(failure.message ?? '', /^-o yaml is not an output detour has/);
  });

  it("the CLI: `detour <command> --help` (or -h) prints the help; a --help after -- is the command's", () => {
    const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
    for (const args of [
      ['exec', '--help'],
      ['up', '-h'],
      ['status', '--help'],
      ['feature', 'up', '--help'],
    ]) {
      const help = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
      assert.equal(help.status, 0, `${args.join(' ')}: ${help.stderr}`);
      assert.match(help.stdout, /^detour — run one service/);
      assert.match(help.stdout, /Flags of exec and up/);
    }
    const wrapped = spawnSync(
      process.execPath,
      [
        main,
        'exec',
        '--agent',
        '127.0.0.1:1',
        '--token',
        't',
        '--egress-only',
        '--json',
        '--',
        'true',
        '--help',
      ],
      { encoding: 'utf8' },
    );
    assert.equal(wrapped.stdout, '', 'no help printed');
    assert.match(wrapped.stderr, /DETOUR_AGENT_UNREACHABLE/);
  });
});
