/**
 * Bad input end to end: a wrong token, an invalid filter, and a header value another session holds.
 * Each is refused with a message naming the problem, and the agent keeps serving the good session.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inbound, ports, Rig } from '../support/detour.ts';
import { addresses } from '../support/netns.ts';
import { run } from '../support/processes.ts';

describe('bad input', { timeout: 120_000 }, () => {
  let rig: Rig;

  const runCli = (args: string[]) =>
    run(rig.topology.exec('laptop', rig.cli(args)), { timeoutMs: 20_000, what: `detour ${args.join(' ')}` });

  const localStillServes = async () => {
    const result = await rig.curl('cluster', ['-sS', ...inbound('/still', 'dev-a')], 5_000);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).app, 'local', 'the good session keeps being served');
  };

  before(async () => {
    rig = new Rig('bad');
    await rig.startApp('cluster', 'remote', { port: ports.remoteApp, host: addresses.cluster });
    await rig.startAgent();
    await rig.startLocalAppSession('holder-a', 'dev-a');
  });

  after(async () => {
    await rig?.close();
  });

  test('wrong token: the CLI exits non-zero naming the token; the agent logs the refusal and keeps serving', async () => {
    const mark = rig.agent?.stderr.length ?? 0;
    const result = await runCli(
      rig.sessionArgs({
        name: 'intruder',
        headers: ['x-dev=dev-z'],
        port: '8080',
        token: 'wrong',
        json: false,
        command: ['true'],
      }),
    );
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /detour: error: .*token/i, result.stderr);

    const json = await runCli(
      rig.sessionArgs({
        name: 'intruder',
        headers: ['x-dev=dev-z'],
        port: '8080',
        token: 'wrong',
        command: ['true'],
      }),
    );
    assert.notEqual(json.code, 0);
    const failure = JSON.parse(json.stderr.trim().split('\n').at(-1) ?? '{}');
    assert.equal(failure.level, 'error');
    assert.match(String(failure.message), /token/i);

    const refused = await rig.agent?.waitForLine(
      'stderr',
      (l) => l.event === 'tunnel.refused',
      'tunnel.refused',
      5_000,
      mark,
    );
    assert.match(JSON.stringify(refused), /token/i);
    assert.equal(rig.agent?.status, undefined, 'the agent is still running');
    await localStillServes();
  });

  test('invalid filter: the error names the regex', async () => {
    const result = await runCli(
      rig.sessionArgs({
        name: 'bad-regex',
        headers: ['x-dev~=(a)\\1'],
        port: '8080',
        json: false,
        command: ['true'],
      }),
    );
    assert.notEqual(result.code, 0);
    // Named as typed, or JSON-quoted (which doubles the backslash).
    const named = result.stderr.includes('(a)\\1') || result.stderr.includes(JSON.stringify('(a)\\1'));
    assert.ok(named, `the message names the regex:\n${result.stderr}`);
    assert.match(result.stderr, /RE2/);
    assert.match(result.stderr, /detour: error: /);
  });

  test('a header value another session holds: the second session is refused naming the holder', async () => {
    const result = await runCli(
      rig.sessionArgs({
        name: 'second-a',
        headers: ['x-dev=dev-a'],
        port: '8080',
        json: false,
        command: ['true'],
      }),
    );
    assert.notEqual(result.code, 0, `a second session got x-dev=dev-a:\n${result.stderr}`);
    assert.match(result.stderr, /held by session holder-a/, result.stderr);
    await localStillServes();
  });
});
