/**
 * Egress end to end: the local app, run under `detour exec` (so with the Node layer), calls a
 * service by a name only the pod can resolve; the call leaves from the agent in the pod namespace.
 * The laptop namespace can neither resolve nor reach that service itself.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inbound, paymentsName, ports, Rig, token } from '../support/detour.ts';
import { addresses } from '../support/netns.ts';
import { run } from '../support/processes.ts';

describe('egress: local app → CLI → tunnel → agent → cluster service', { timeout: 120_000 }, () => {
  let rig: Rig;

  before(async () => {
    rig = new Rig('eg');
    await rig.startApp('cluster', 'payments', { port: ports.payments, host: addresses.cluster });
    await rig.startApp('cluster', 'payments', {
      port: ports.paymentsGrpc,
      host: addresses.cluster,
      kind: 'grpc',
    });
    await rig.startApp('cluster', 'remote', { port: ports.remoteApp, host: addresses.cluster });
    await rig.startAgent();
    await rig.startLocalAppSession('dev-e', 'dev-e');
  });

  after(async () => {
    await rig?.close();
  });

  test('the laptop namespace cannot resolve or reach the cluster service directly', async () => {
    const lookup = await run(rig.topology.exec('laptop', ['getent', 'hosts', paymentsName]), {
      timeoutMs: 10_000,
    });
    assert.notEqual(lookup.code, 0, `the laptop resolved ${paymentsName}: ${lookup.stdout}`);
    const direct = await rig.curl('laptop', ['-sS', `http://${addresses.cluster}:${ports.payments}/`], 5_000);
    assert.notEqual(direct.code, 0, 'the laptop reached the cluster address directly');
    // ...while the pod resolves it with its own resolver.
    const inPod = await run(rig.topology.exec('pod', ['getent', 'hosts', paymentsName]), {
      timeoutMs: 10_000,
    });
    assert.match(inPod.stdout, new RegExp(`^${addresses.cluster.replaceAll('.', '\\.')}\\s`));
  });

  for (const name of [paymentsName, 'payments']) {
    test(`the local app (node:http under the layer) calls http://${name}:${ports.payments} through the agent`, async () => {
      const url = `http://${name}:${ports.payments}/charge`;
      const result = await rig.curl('cluster', [
        '-sS',
        ...inbound(`/egress?url=${encodeURIComponent(url)}`, 'dev-e'),
      ]);
      assert.equal(result.code, 0, result.stderr);
      const answer = JSON.parse(result.stdout);
      assert.equal(answer.app, 'local');
      assert.equal(answer.status, 200, JSON.stringify(answer));
      const payments = JSON.parse(answer.body);
      assert.equal(payments.app, 'payments');
      assert.equal(payments.path, '/charge');
    });
  }

  // An app that propagates nothing itself: the layer carries the inbound request's x-dev on each.
  for (const client of ['http', 'fetch', 'undici', 'grpc'] as const) {
    test(`${client}: the call leaves from the agent and carries the inbound request's routing header`, async () => {
      const target =
        client === 'grpc'
          ? `${paymentsName}:${ports.paymentsGrpc}`
          : `http://${paymentsName}:${ports.payments}/propagate`;
      const result = await rig.curl('cluster', [
        '-sS',
        ...inbound(`/egress?client=${client}&url=${encodeURIComponent(target)}`, 'dev-e'),
      ]);
      const answer = JSON.parse(result.stdout);
      assert.equal(answer.status, 200, JSON.stringify(answer));
      const payments = JSON.parse(answer.body);
      assert.equal(payments.app, 'payments');
      const dev = client === 'grpc' ? payments.dev : payments.headers['x-dev'];
      assert.equal(dev, 'dev-e', JSON.stringify(answer));
    });
  }

  test('curl inside `detour exec`: --socks5-hostname, HTTP_PROXY and ALL_PROXY reach the cluster service', async () => {
    const script = [
      `curl -sS --max-time 10 --socks5-hostname "$DETOUR_PROXY" http://${paymentsName}:${ports.payments}/socks`,
      `curl -sS --max-time 10 --proxy "$HTTP_PROXY" http://payments:${ports.payments}/http-proxy`,
      // Without the HTTP proxy variables curl falls back to ALL_PROXY=socks5h://...
      `env -u http_proxy -u HTTP_PROXY curl -sS --max-time 10 http://${paymentsName}:${ports.payments}/all-proxy`,
    ].join(' && ');
    const result = await run(
      rig.topology.exec(
        'laptop',
        rig.cli(
          rig.sessionArgs({
            name: 'dev-curl',
            headers: ['x-dev=dev-curl'],
            port: String(ports.localApp + 1),
            command: ['bash', '-c', script],
          }),
        ),
      ),
      { timeoutMs: 40_000, what: 'detour exec -- curl ...' },
    );
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const answers = result.stdout
      .split('\n')
      .filter((line) => line.includes('"app"'))
      .map((line) => JSON.parse(line));
    assert.deepEqual(
      answers.map((answer) => [answer.app, answer.path]),
      [
        ['payments', '/socks'],
        ['payments', '/http-proxy'],
        ['payments', '/all-proxy'],
      ],
    );
  });

  /** `detour exec --egress-only <flags> -- <command>` in the laptop namespace, run to its end. */
  const execEgressOnly = (flags: string[], command: string[]) =>
    run(
      rig.topology.exec(
        'laptop',
        rig.cli([
          'exec',
          '--egress-only',
          '--agent',
          `${addresses.pod}:${ports.tunnel}`,
          '--token',
          token,
          ...flags,
          '--',
          ...command,
        ]),
      ),
      { timeoutMs: 40_000, what: `detour exec --egress-only -- ${command.join(' ')}` },
    );

  test('--egress-only: a process that takes no requests calls the cluster service through the agent, carrying --carry-header', async () => {
    const script = `const r = await fetch('http://${paymentsName}:${ports.payments}/egress-only'); console.log(JSON.stringify(await r.json()));`;
    const result = await execEgressOnly(
      ['--session', 'eo-1', '--carry-header', 'x-dev=feature-x', '--json'],
      [process.execPath, '--input-type=module', '-e', script],
    );
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const payments = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}');
    assert.equal(payments.app, 'payments');
    assert.equal(payments.path, '/egress-only');
    assert.equal(payments.headers['x-dev'], 'feature-x', 'the carried header');
    assert.match(result.stderr, /"event":"session.ready".*"mode":"egress-only"/);
  });

  test('detour exec exits as its command did: its code, or 128 + the signal that ended it (as a shell)', async () => {
    for (const [command, expected] of [
      ['exit 7', 7],
      ['kill -TERM $$', 143],
      ['kill -INT $$', 130],
    ] as const) {
      const result = await execEgressOnly([], ['sh', '-c', command]);
      assert.equal(result.code, expected, `${command}:\n${result.stderr}`);
    }
  });
});
