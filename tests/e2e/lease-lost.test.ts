// A laptop that sleeps through its session: the whole `detour exec` (the CLI and the app it runs)
// is stopped with SIGSTOP until the agent has ended the session's Lease and reverted its route, as
// it does for a CLI that vanished; then SIGCONT. At its next renewal the CLI finds the Lease gone,
// creates a new one with the same tunnel token (so the agent admits its tunnels again), writes the
// route again and probes it: x-dev reaches this machine again with nothing restarted. If another
// developer took the header meanwhile, the CLI ends the command with DETOUR_SESSION_LOST naming that
// session, and leaves nothing of its own behind.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { waitFor } from '../cluster/wait.ts';
import { freePort } from '../support/ports.ts';
import type { ManagedProcess } from '../support/processes.ts';
import {
  callerGet,
  detourLeases,
  execOrdersArgs,
  interrupt,
  localOrders,
  routingObjects,
  startDetour,
  untouchedRoutingObjects,
  useSample,
  whenServing,
} from './support.ts';

/** Who answered orders for a request to frontend with `x-dev: dev`: its `name` (`laptop`, …) or `v1`. */
async function ordersFor(dev: string): Promise<string | undefined> {
  const answer = await callerGet('http://frontend:8080/', { 'x-dev': dev });
  const orders = answer.body.called?.[0]?.body;
  return orders?.version === 'local' ? String(orders.pod) : orders?.version;
}

/** `detour exec` stealing `x-dev: dev` to a local orders app named `name`, once it serves. */
async function serving(dev: string, session: string, name: string): Promise<ManagedProcess> {
  const local = await freePort();
  return whenServing(
    startDetour(execOrdersArgs(dev, local, ['--json', '--session', session], localOrders(local, name))),
    `x-dev: ${dev} to be answered by the local app ${name}`,
    async () => (await ordersFor(dev)) === name,
  );
}

/** Stops the whole session (CLI and app, as a sleeping laptop) until the agent has ended its Lease. */
async function sleepUntilLeaseEnded(
  cli: ManagedProcess,
  untouched: Record<string, unknown>,
): Promise<number> {
  cli.signal('SIGSTOP');
  const stopped = Date.now();
  try {
    await waitFor(
      'the agent to end the Lease of the stopped session and revert its route',
      async () => (await detourLeases()).length === 0 && isDeepStrictEqual(await routingObjects(), untouched),
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    return Date.now() - stopped;
  } catch (error) {
    cli.signal('SIGCONT');
    throw error;
  }
}

function events(cli: ManagedProcess, event: string): Record<string, unknown>[] {
  return cli.jsonLines('stderr').filter((line) => line.event === event);
}

describe('a session whose Lease ended while its machine slept', () => {
  let untouched: Record<string, unknown>;

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    untouched = await untouchedRoutingObjects();
  });

  it('comes back on waking: a new Lease, the route written again, the header served locally', async () => {
    const cli = await serving('e2e-sleep', 'e2e-sleep', 'laptop');
    try {
      const [first] = events(cli, 'lease.created');
      const ms = await sleepUntilLeaseEnded(cli, untouched);
      console.log(`# asleep -> Lease ended and route reverted by the agent: ${ms} ms`);
      assert.equal(await ordersFor('e2e-sleep'), 'v1', 'while the laptop sleeps the real pods answer');
      cli.signal('SIGCONT');
      const woke = Date.now();
      await waitFor(
        'x-dev: e2e-sleep to reach the local app again',
        async () => (await ordersFor('e2e-sleep')) === 'laptop',
        { timeoutMs: 60_000, intervalMs: 500 },
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${cli.tail(20)}`);
      });
      console.log(`# awake -> served locally again: ${Date.now() - woke} ms`);
      const [lost] = events(cli, 'lease.interrupted');
      assert.equal(lost?.gone, true, cli.tail(20));
      assert.ok(Number(lost?.sinceRenewalSeconds) >= ms / 1000 - 15, JSON.stringify(lost));
      await cli.waitForLine(
        'stderr',
        (line) => line.event === 'session.resumed',
        'the session reported back',
      );
      const leases = events(cli, 'lease.created');
      assert.equal(leases.length, 2, 'a second Lease');
      assert.notEqual(leases[1]?.uid, first?.uid, 'a new Lease, not the old one');
      assert.deepEqual(await detourLeases(), ['detour-e2e-sleep']);
      assert.equal(await ordersFor('e2e-other'), 'v1', 'other headers still reach the pods');
    } finally {
      cli.signal('SIGCONT');
      interrupt(cli);
      await cli.exited;
    }
    assert.deepEqual(await routingObjects(), untouched, 'every routing object as before');
    assert.deepEqual(await detourLeases(), []);
  });

  it('ends with DETOUR_SESSION_LOST when another session took the header meanwhile, leaving nothing behind', async () => {
    const sleeper = await serving('e2e-taken', 'e2e-sleeper', 'laptop');
    let taker: ManagedProcess | undefined;
    try {
      await sleepUntilLeaseEnded(sleeper, untouched);
      taker = await serving('e2e-taken', 'e2e-taker', 'desktop');
      sleeper.signal('SIGCONT');
      const status = await Promise.race([
        sleeper.exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`detour did not end:\n${sleeper.tail(20)}`)), 60_000),
        ),
      ]);
      assert.equal(status.code, 2, `exit 2, as for every error detour names:\n${sleeper.tail(20)}`);
      const [failure] = events(sleeper, 'failed');
      assert.equal(failure?.code, 'DETOUR_SESSION_LOST', sleeper.tail(20));
      assert.match(String(failure?.message), /session e2e-sleeper cannot come back: .*e2e-taker/);
      assert.equal(await ordersFor('e2e-taken'), 'desktop', 'the other session keeps the header');
      assert.deepEqual(await detourLeases(), ['detour-e2e-taker'], 'no Lease of the lost session');
    } finally {
      sleeper.signal('SIGCONT');
      await sleeper.stop(10_000);
      if (taker) {
        interrupt(taker);
        await taker.exited;
      }
    }
    assert.deepEqual(await routingObjects(), untouched, 'every routing object as before');
    assert.deepEqual(await detourLeases(), []);
  });
});
