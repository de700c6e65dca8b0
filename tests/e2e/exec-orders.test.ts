// The main flow, end to end on the local cluster with Istio: a developer runs the orders service on
// this machine with
//   KUBECONFIG=<developer> detour exec --target deploy/orders -n staging --header x-dev=dev-a \
//     --port 8080:<local> -- node tests/cluster/sample/orders.ts
// (no --agent, no --token: the CLI port-forwards to the installed agent through the apiserver, and the
// agent admits it by its session Lease). A request from the caller pod to frontend with x-dev: dev-a is
// answered by the local orders, whose call to `payments` (a cluster name) leaves from the agent's pod;
// without the header the real orders pods answer. After the CLI exits every request reaches the real
// pods and the VirtualService is exactly as before.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { waitFor } from '../cluster/wait.ts';
import { freePort } from '../support/ports.ts';
import type { ManagedProcess } from '../support/processes.ts';
import {
  callerGet,
  detourCommand,
  detourLeases,
  developerKubectl,
  execOrdersArgs,
  getVirtualService,
  interrupt,
  routingState,
  spiffe,
  startDetour,
  useSample,
  whenServing,
} from './support.ts';

/** The orders answer inside frontend's answer to the caller. */
async function ordersVia(headers: Record<string, string>) {
  const answer = await callerGet('http://frontend:8080/', headers);
  assert.equal(answer.status, 200, JSON.stringify(answer));
  const orders = answer.body.called?.[0];
  return { orders: orders?.body, status: orders?.status, answer };
}

/** Starts the developer's command and resolves once x-dev: dev-a is answered by the local orders app. */
async function startSession(extraArgs: string[] = []): Promise<{ cli: ManagedProcess; ms: number }> {
  const local = await freePort();
  const started = Date.now();
  const running = await whenServing(
    startDetour(execOrdersArgs('dev-a', local, ['--json', ...extraArgs])),
    'a request with x-dev: dev-a to be answered by the local orders app',
    async () => (await ordersVia({ 'x-dev': 'dev-a' })).orders?.version === 'local',
  );
  return { cli: running, ms: Date.now() - started };
}

describe('detour exec --target deploy/orders through the mesh (issue 3, the main flow)', () => {
  let cli: ManagedProcess | undefined;
  let before_: ReturnType<typeof routingState>;

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    console.log(`# detour command: ${JSON.stringify(detourCommand())}`);
    // Another session on orders (a run that was interrupted) would hold x-dev=dev-a; its Lease runs out.
    const vs = await waitFor(
      'no detour session on VirtualService staging/orders (an earlier run’s Lease expires within 30 s)',
      async () => {
        const current = await getVirtualService('orders');
        return current.spec.http.some((route) => String(route.name).startsWith('detour-'))
          ? undefined
          : current;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    before_ = routingState(vs);
  });

  after(async () => {
    await cli?.stop(10_000);
  });

  it('x-dev: dev-a reaches the local orders app, whose payments call leaves from the agent; the rest the real pods', async () => {
    const session = await startSession();
    cli = session.cli;
    console.log(`# detour exec start -> first request served locally: ${session.ms} ms`);
    // The CLI checked the route from inside the mesh (a probe through the agent's own sidecar)
    // before it ran the app.
    const live = /"event":"route.live".*?"ms":(\d+)/.exec(cli.stderr);
    assert.ok(live, `the CLI reports the route live:\n${cli.tail(20)}`);
    console.log(`# route write -> live, seen by the agent's probe through its sidecar: ${live[1]} ms`);

    const dev = await ordersVia({ 'x-dev': 'dev-a', baggage: 'env=dev-a' });
    assert.equal(dev.orders?.service, 'orders');
    assert.equal(dev.orders?.pod, 'laptop', JSON.stringify(dev.answer));
    assert.deepEqual(dev.orders?.headers, { 'x-dev': 'dev-a', baggage: 'env=dev-a' });
    const payments = dev.orders?.called?.[0];
    assert.equal(payments?.status, 200, JSON.stringify(dev.answer));
    assert.equal(payments?.body?.service, 'payments');
    assert.equal(
      payments?.body?.from,
      spiffe('detour-agent'),
      'the local app’s call to payments left from the agent pod (its sidecar’s identity)',
    );
    assert.equal(payments?.body?.headers?.['x-dev'], 'dev-a');

    for (let i = 0; i < 3; i++) {
      const other = await ordersVia({});
      assert.equal(other.orders?.version, 'v1', JSON.stringify(other.answer));
      assert.match(String(other.orders?.pod), /^orders-/);
      const otherDev = await ordersVia({ 'x-dev': 'dev-b' });
      assert.equal(otherDev.orders?.version, 'v1', JSON.stringify(otherDev.answer));
    }

    const during = await getVirtualService('orders');
    assert.ok(
      during.spec.http.length === before_.spec.http.length + 1,
      `detour added one route on top: ${JSON.stringify(during.spec.http)}`,
    );
  });

  it('after the CLI exits, every request reaches the real pods and the VirtualService is as before', async () => {
    assert.ok(cli, 'the session ran');
    interrupt(cli);
    const status = await Promise.race([
      cli.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`detour did not exit:\n${cli?.tail(40)}`)), 30_000),
      ),
    ]);
    console.log(`# detour exited ${JSON.stringify(status)}`);
    const afterState = routingState(await getVirtualService('orders'));
    assert.deepEqual(afterState, before_);
    for (const headers of [{ 'x-dev': 'dev-a' }, {}] as Array<Record<string, string>>) {
      const { orders } = await ordersVia(headers);
      assert.equal(orders?.version, 'v1', JSON.stringify(orders));
    }
    assert.deepEqual(await detourLeases(), [], 'the session Lease is gone');
  });

  it('a CLI killed with SIGKILL: the agent reverts its route after the grace period (janitor)', async () => {
    const session = await startSession();
    cli = session.cli;
    cli.signal('SIGKILL');
    await cli.exited;
    const killed = Date.now();
    await waitFor(
      'the agent to revert the route of the killed session',
      async () => isDeepStrictEqual(routingState(await getVirtualService('orders')), before_),
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const reverted = Date.now() - killed;
    assert.deepEqual(await detourLeases(), [], 'the agent ended the session Lease');
    const { orders } = await ordersVia({ 'x-dev': 'dev-a' });
    assert.equal(orders?.version, 'v1', JSON.stringify(orders));
    console.log(`# CLI killed -> route reverted by the agent: ${reverted} ms (grace period 15 s)`);
  });
});

// The other Istio-facing adapters, against the route config istiod really builds: an EnvoyFilter
// HTTP_ROUTE patch (for GitOps-owned VirtualServices) and a Gateway API (GAMMA) HTTPRoute rule.
for (const mesh of ['istio-envoyfilter', 'gateway-api'] as const) {
  describe(`detour exec --mesh ${mesh} through the mesh`, () => {
    let before_: ReturnType<typeof routingState>;

    before(async () => {
      await useSample((line) => console.log(`# ${line}`));
      before_ = routingState(await getVirtualService('orders'));
    });

    it('x-dev: dev-a reaches the local orders app, the rest the real pods; all as before once it exits', async () => {
      const { cli, ms } = await startSession(['--mesh', mesh]);
      try {
        console.log(`# --mesh ${mesh}: detour exec start -> first request served locally: ${ms} ms`);
        assert.match(cli.stderr, new RegExp(`"event":"mesh.detected".*routing with ${mesh}`));
        if (mesh === 'gateway-api') assert.match(cli.stderr, /"event":"mesh.takeover"/);
        // The real pods answer (with gateway-api any of them: an HTTPRoute on the Service takes
        // over from the VirtualService's subsets, which the CLI warns about).
        const other = await ordersVia({ 'x-dev': 'dev-b' });
        assert.match(String(other.orders?.pod), /^orders-/, JSON.stringify(other.answer));
      } finally {
        interrupt(cli);
        await cli.exited;
      }
      assert.deepEqual(routingState(await getVirtualService('orders')), before_);
      assert.deepEqual(await detourLeases(), [], 'the session Lease is gone');
      const leftovers = await developerKubectl(['get', 'envoyfilters,httproutes', '-A', '-o', 'name']);
      assert.equal(leftovers.trim(), '', `nothing detour created is left: ${leftovers}`);
      const { orders } = await ordersVia({ 'x-dev': 'dev-a' });
      assert.equal(orders?.version, 'v1', JSON.stringify(orders));
    });
  });
}
