// The two other ways detour routes, proven on the data plane of the local cluster as the developer:
// - mirror (`detour exec --target deploy/orders --header x-dev=e2e-mirror --mirror -- <local orders>`):
//   a request with the header from the caller pod is answered by the real orders pod, and a copy
//   reaches the local app; requests without it never do; afterwards the routing is as before.
// - the no-mesh Service mode (`--mesh service`) in namespace `plain`, which has no Istio injection:
//   the orders Service is pointed at the agent, which sends x-dev: e2e-svc to the local app and the
//   rest to a shadow Service of the real pods; afterwards the Services are exactly as before.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deployPlain, plainNamespace } from '../cluster/sample/plain.ts';
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
  sampleNamespace,
  startDetour,
  untouchedRoutingObjects,
  useSample,
} from './support.ts';

/** Starts `detour exec` and waits for its session.ready (after the route was probed live). */
async function startExec(args: string[]): Promise<ManagedProcess> {
  const cli = startDetour(args);
  await cli.waitForLine(
    'stderr',
    (json) => json.event === 'session.ready',
    'the session to be ready',
    90_000,
  );
  return cli;
}

/** Ctrl-C: the wrapped app ends by SIGINT (so does the CLI's exit code), the session after it. */
async function endExec(cli: ManagedProcess): Promise<void> {
  interrupt(cli);
  await cli.exited;
  assert.ok(
    cli.jsonLines('stderr').some((line) => line.event === 'session.ended'),
    `the session ended:\n${cli.tail(20)}`,
  );
}

/** The paths the local app served (its `--log` lines, on the CLI's stdout). */
function served(cli: ManagedProcess): string[] {
  return cli.jsonLines('stdout').flatMap((line) => (typeof line.served === 'string' ? [line.served] : []));
}

describe('detour exec --mirror through the mesh (issue 9)', () => {
  let cli: ManagedProcess | undefined;
  let before_: Record<string, unknown>;

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    before_ = await untouchedRoutingObjects();
  });

  after(async () => {
    await cli?.stop(10_000);
  });

  it('the real pod answers x-dev: e2e-mirror and a copy reaches the local app; other requests never do', async () => {
    const port = await freePort();
    cli = await startExec(
      execOrdersArgs('e2e-mirror', port, ['--mirror', '--json'], localOrders(port, 'laptop', ['--log'])),
    );
    const live = cli.jsonLines('stderr').find((line) => line.event === 'route.live');
    assert.ok(
      live,
      `the mirror route was probed live (a copy of the probe reached the agent):\n${cli.tail(20)}`,
    );
    console.log(`# mirror route write -> a copy of the probe reached the agent: ${live.ms} ms`);

    const untagged = await callerGet('http://orders:8080/untagged-1');
    assert.match(String(untagged.body.pod), /^orders-/);
    const tagged = await callerGet('http://orders:8080/mirrored-1', { 'x-dev': 'e2e-mirror' });
    assert.equal(tagged.status, 200);
    assert.match(String(tagged.body.pod), /^orders-/, `the real pod answered: ${JSON.stringify(tagged)}`);
    assert.equal(tagged.body.version, 'v1');
    await waitFor(
      'the copy to reach the local app',
      () => served(cli as ManagedProcess).includes('/mirrored-1'),
      {
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );
    await callerGet('http://orders:8080/mirrored-2', { 'x-dev': 'e2e-mirror' });
    await waitFor('the second copy', () => served(cli as ManagedProcess).includes('/mirrored-2'), {
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    assert.deepEqual(served(cli), ['/mirrored-1', '/mirrored-2'], 'only the header’s requests were copied');
    const copy = cli.jsonLines('stdout').find((line) => line.served === '/mirrored-1');
    assert.equal(copy?.['x-dev'], 'e2e-mirror');

    await endExec(cli);
    cli = undefined;
    assert.deepEqual(await routingObjects(), before_);
    assert.deepEqual(await detourLeases(), []);
  });
});

describe('detour exec --mesh service in a namespace without Istio (issue 9)', () => {
  let cli: ManagedProcess | undefined;
  let before_: Record<string, unknown>;
  const orders = (headers: Record<string, string> = {}) =>
    callerGet('http://orders:8080/', headers, plainNamespace);

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    await deployPlain();
    before_ = await waitFor(
      'the Services of plain as deployed (no shadow left by an earlier run: its Lease expires within 30 s)',
      async () => {
        const services = await routingObjects(plainNamespace, 'services');
        return Object.keys(services).some((key) => key.includes('shadow')) ? undefined : services;
      },
      { timeoutMs: 90_000, intervalMs: 1000 },
    );
    await waitFor('orders in plain to answer', async () => (await orders()).status === 200, {
      timeoutMs: 30_000,
    });
  });

  after(async () => {
    await cli?.stop(10_000);
  });

  it('x-dev: e2e-svc reaches the local app, the rest the real pods through the shadow Service; Services exactly as before', async () => {
    assert.notEqual(sampleNamespace, plainNamespace);
    const port = await freePort();
    cli = await startExec([
      'exec',
      '--target',
      'deploy/orders',
      '-n',
      plainNamespace,
      '--mesh',
      'service',
      '--header',
      'x-dev=e2e-svc',
      '--port',
      `8080:${port}`,
      '--json',
      '--',
      ...localOrders(port, 'laptop', ['--log']),
    ]);
    assert.ok(
      cli.jsonLines('stderr').some((line) => line.event === 'route.live'),
      `the probe came back through the Service:\n${cli.tail(20)}`,
    );
    const mine = await orders({ 'x-dev': 'e2e-svc' });
    assert.equal(mine.body.pod, 'laptop', JSON.stringify(mine));
    for (const headers of [{}, { 'x-dev': 'someone-else' }] as Array<Record<string, string>>) {
      const other = await orders(headers);
      assert.equal(other.status, 200, JSON.stringify(other));
      assert.match(String(other.body.pod), /^orders-/, JSON.stringify(other));
    }
    const during = await routingObjects(plainNamespace, 'services');
    assert.ok(
      Object.keys(during).includes('Service/orders-detour-shadow'),
      JSON.stringify(Object.keys(during)),
    );

    await endExec(cli);
    cli = undefined;
    assert.deepEqual(await routingObjects(plainNamespace, 'services'), before_);
    assert.deepEqual(await detourLeases(plainNamespace), []);
    await waitFor(
      'x-dev: e2e-svc back on the real pods',
      async () => /^orders-/.test(String((await orders({ 'x-dev': 'e2e-svc' })).body.pod)),
      { timeoutMs: 15_000, intervalMs: 250 },
    );
  });
});
