/**
 * The agent dies under a running CLI (pod restarted, port-forward broken): the CLI says it lost
 * the tunnel, reconnects when the agent is back, re-registers the session, and requests flow again;
 * an outbound call the app makes meanwhile waits for the tunnel and goes through.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inbound, paymentsName, ports, Rig } from '../support/detour.ts';
import { addresses } from '../support/netns.ts';
import type { ManagedProcess } from '../support/processes.ts';
import { waitFor } from '../support/wait.ts';

describe('the agent restarted under the CLI', { timeout: 120_000 }, () => {
  let rig: Rig;
  let cli: ManagedProcess;
  /** A second session, `detour up` with human output: what a developer sees in the terminal. */
  let up: ManagedProcess;

  const answerFor = async (dev?: string) => {
    const result = await rig.curl('cluster', ['-sS', ...inbound('/who', dev)], 5_000);
    return result.code === 0 ? (JSON.parse(result.stdout).app as string) : `curl exit ${result.code}`;
  };

  before(async () => {
    rig = new Rig('rc');
    await rig.startApp('cluster', 'remote', { port: ports.remoteApp, host: addresses.cluster });
    await rig.startApp('cluster', 'payments', { port: ports.payments, host: addresses.cluster });
    await rig.startAgent();
    cli = await rig.startLocalAppSession('dev-a', 'dev-a');
    up = await rig.startSession({
      name: 'dev-b',
      headers: ['x-dev=dev-b'],
      port: '8081',
      json: false,
      waitReady: false,
    });
    await up.waitForLine('stderr', /session dev-b ready/, 'detour up: session dev-b ready');
  });

  after(async () => {
    await rig?.close();
  });

  for (const [how, signal] of [
    ['killed (SIGKILL)', 'SIGKILL'],
    ['stopped (SIGTERM)', 'SIGTERM'],
  ] as const) {
    test(`agent ${how} and started again: the CLI reports the loss, reconnects, the session is back`, async () => {
      const mark = cli.stderr.length;
      const upMark = up.stderr.length;
      const agent = rig.agent;
      assert.ok(agent);
      agent.signal(signal);
      await agent.exited;

      const lost = await cli.waitForLine(
        'stderr',
        (l) => l.event === 'tunnel.lost',
        'tunnel.lost',
        10_000,
        mark,
      );
      assert.equal((lost as Record<string, unknown>).level, 'warn');
      assert.match(
        String((lost as Record<string, unknown>).message),
        /lost the tunnel to the agent.*reconnecting/,
      );
      assert.equal(cli.status, undefined, 'the CLI keeps running while the agent is away');

      // The app calls the cluster while no tunnel is up (through the session's proxy, as the layer does).
      const ready = cli.jsonLines('stderr').find((l) => l.event === 'session.ready') as {
        proxy: { host: string; port: number };
      };
      const during = rig.curl(
        'laptop',
        [
          '-sS',
          '--socks5-hostname',
          `${ready.proxy.host}:${ready.proxy.port}`,
          `http://${paymentsName}:${ports.payments}/while-reconnecting`,
        ],
        15_000,
      );
      await rig.startAgent();
      const restored = await cli.waitForLine(
        'stderr',
        (l) => l.event === 'tunnel.restored',
        'tunnel.restored',
        15_000,
        mark,
      );
      assert.match(String((restored as Record<string, unknown>).message), /session dev-a is back/);
      await waitFor(
        { what: 'x-dev: dev-a to reach the local app again', timeoutMs: 10_000, detail: () => cli.tail() },
        async () => ((await answerFor('dev-a')) === 'local' ? true : undefined),
      );
      assert.equal(await answerFor(), 'remote');
      const called = await during;
      assert.equal(
        called.code,
        0,
        `the call made while the tunnel was down: ${called.stderr}\n${cli.tail(10)}`,
      );
      assert.equal(JSON.parse(called.stdout).path, '/while-reconnecting');

      // The human form, on stderr.
      await up.waitForLine(
        'stderr',
        /^detour: warning: lost the tunnel to the agent .*reconnecting/,
        'the warning',
        5_000,
        upMark,
      );
      await up.waitForLine(
        'stderr',
        /^detour: tunnel restored after \d+ attempt\(s\); session dev-b is back/,
        'restored',
        15_000,
        upMark,
      );
      assert.equal(up.status, undefined, 'detour up keeps running');
    });
  }
});
