// Feature environments against the in-memory cluster: the sample system's routing objects
// (baseline VirtualServices and DestinationRules with v1/v2 subsets for orders and payments), an
// environment routing `x-dev: pay` for payments to the payments-v2 pods, make-before-break both
// ways, renewal, conflicts naming the holder, exact revert by `down` and by the janitor at expiry.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runJanitor } from '../src/applier.ts';
import { restoredExactly } from '../src/canonical.ts';
import { FilterHeldError, InvalidIntentError } from '../src/errors.ts';
import { applyFeatureEnvironment, removeFeatureEnvironment } from '../src/feature-applier.ts';
import {
  checkFeatureConflict,
  type FeatureEnvironment,
  parseFeatureResponse,
  summarizeFeature,
} from '../src/feature-env.ts';
import { InMemoryCluster } from '../src/in-memory-cluster.ts';
import { adapterFor, allAdapters } from '../src/index.ts';
import type { EnvoyFilter } from '../src/istio-envoyfilter/adapter.ts';
import type { DestinationRule, VirtualService } from '../src/istio-virtualservice/types.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import { refOf, sameObject } from '../src/k8s-object.ts';
import type { Lease } from '../src/lease.ts';
import { buildLease, checkFilterConflict } from '../src/lease.ts';
import { memoryClient } from '../src/memory-client.ts';
import type { Write } from '../src/plan.ts';
import { prng, sessionIntent } from './support.ts';

const t0 = new Date('2026-12-02T10:00:00.000Z');
const agent = { name: 'detour-agent', namespace: 'staging', port: 8080 };
const fast = { sleep: async () => {}, random: prng(7) };

function sampleRouting(): KubeObject[] {
  return ['orders', 'payments'].flatMap((app): KubeObject[] => [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: app, namespace: 'staging', creationTimestamp: '2026-12-01T00:00:00Z' },
      spec: {
        hosts: [app],
        http: [{ name: 'default', route: [{ destination: { host: app, subset: 'v1' } }] }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: app, namespace: 'staging', creationTimestamp: '2026-12-01T00:00:00Z' },
      spec: {
        host: app,
        subsets: [
          { name: 'v1', labels: { version: 'v1' } },
          { name: 'v2', labels: { version: 'v2' } },
        ],
      },
    },
  ]);
}

function environment(overrides: Partial<FeatureEnvironment> = {}): FeatureEnvironment {
  return {
    name: 'pay',
    namespace: 'staging',
    filter: { headers: { 'x-dev': { exact: 'pay' } } },
    holder: 'alice@laptop',
    services: [
      {
        service: 'payments',
        host: 'payments.staging.svc.cluster.local',
        port: 8080,
        workload: 'Deployment/payments-v2',
        labels: { app: 'payments', version: 'v2' },
      },
    ],
    ...overrides,
  };
}

function describeWrites(writes: readonly Write[]): string[] {
  return writes.map((w) => `${w.op} ${w.op === 'delete' ? w.ref.kind : w.object.kind}`);
}

function find<T extends KubeObject>(cluster: InMemoryCluster, kind: string, name: string): T {
  const found = cluster.list().find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind} ${name} exists`);
  return found as T;
}

function assertRouting(before: readonly KubeObject[], cluster: InMemoryCluster): void {
  for (const object of before) {
    const now = cluster.list().find((o) => sameObject(refOf(o), refOf(object)));
    assert.deepEqual(restoredExactly(object, now), { ok: true }, `${object.kind} ${object.metadata.name}`);
  }
}

async function up(
  cluster: InMemoryCluster,
  env = environment(),
  mesh: 'istio' | 'istio-envoyfilter' = 'istio',
) {
  const events: string[] = [];
  const client = memoryClient(cluster, {
    beforeWrite: (w) => events.push(describeWrites([w])[0] as string),
  });
  const result = await applyFeatureEnvironment(client, env, {
    ...fast,
    ttlSeconds: 8 * 3600,
    now: t0,
    agent,
    adapterFor: () => adapterFor(mesh),
    tokenSha256: 'ab'.repeat(32),
    waitForPropagation: async (w) => {
      events.push(`propagated ${w.op === 'delete' ? w.ref.kind : w.object.kind}`);
    },
  });
  return { result, events, client };
}

describe('feature environments', () => {
  test('up: Lease, then the subset, propagated, then the route; the route names the subset and sets the probe header', async () => {
    const cluster = new InMemoryCluster(sampleRouting());
    const { result, events } = await up(cluster);
    assert.deepEqual(events, [
      'create Lease',
      'replace DestinationRule',
      'propagated DestinationRule',
      'replace VirtualService',
    ]);
    const dr = find<DestinationRule>(cluster, 'DestinationRule', 'payments');
    assert.deepEqual(dr.spec?.subsets?.at(-1), {
      name: 'feature-pay',
      labels: { app: 'payments', version: 'v2' },
    });
    const [route, baseline] = find<VirtualService>(cluster, 'VirtualService', 'payments').spec?.http ?? [];
    assert.equal(baseline?.name, 'default');
    assert.deepEqual(route, {
      name: 'detour-feature-pay',
      match: [{ headers: { 'x-dev': { exact: 'pay' } }, port: 8080 }],
      route: [{ destination: { host: 'payments.staging.svc.cluster.local', subset: 'feature-pay' } }],
      headers: {
        response: { set: { 'x-detour-feature': 'feature-pay upstream=%UPSTREAM_REMOTE_ADDRESS%' } },
      },
    });
    assert.deepEqual(
      find<VirtualService>(cluster, 'VirtualService', 'orders').spec?.http?.map((r) => r.name),
      ['default'],
      'orders is not part of the environment',
    );
    const lease = result.lease;
    assert.equal(lease.spec?.leaseDurationSeconds, 8 * 3600);
    assert.equal(lease.metadata.labels?.['detour.dev/feature'], 'pay');
    const summary = summarizeFeature(lease, t0);
    assert.equal(summary?.alive, true);
    assert.equal(summary?.expiresAt, '2026-12-02T18:00:00.000Z');
    assert.deepEqual(
      summary?.services.map((s) => `${s.service}=${s.workload}`),
      ['payments=Deployment/payments-v2'],
    );
  });

  test('up again renews the Lease and writes no route; a changed workload is refused, cluster untouched', async () => {
    const cluster = new InMemoryCluster(sampleRouting());
    const first = await up(cluster);
    const later = new Date(t0.getTime() + 3600_000);
    const client = memoryClient(cluster);
    const again = await applyFeatureEnvironment(client, environment(), {
      ...fast,
      ttlSeconds: 1800,
      now: later,
      agent,
      adapterFor: () => adapterFor('istio'),
    });
    assert.equal(again.renewed, true);
    assert.deepEqual(again.applied, []);
    assert.equal(again.lease.metadata.uid, first.result.lease.metadata.uid);
    assert.equal(again.lease.spec?.acquireTime, first.result.lease.spec?.acquireTime);
    assert.equal(summarizeFeature(again.lease, later)?.expiresAt, '2026-12-02T11:30:00.000Z');

    const snapshot = cluster.list();
    const changed = environment({
      services: [
        {
          ...(environment().services[0] as FeatureEnvironment['services'][0]),
          workload: 'Deployment/payments-v3',
        },
      ],
    });
    await assert.rejects(
      applyFeatureEnvironment(client, changed, {
        ...fast,
        ttlSeconds: 60,
        now: later,
        agent,
        adapterFor: () => adapterFor('istio'),
      }),
      (e: unknown) =>
        e instanceof InvalidIntentError && /routes payments:8080 to Deployment\/payments-v2/.test(e.message),
    );
    assert.deepEqual(cluster.list(), snapshot);
  });

  test('conflicts name the holder: the same header in another environment, or a session on one of its Services', async () => {
    const cluster = new InMemoryCluster(sampleRouting());
    const { client } = await up(cluster);
    const leases = cluster.list().filter((o) => o.kind === 'Lease') as Lease[];
    const other = environment({
      name: 'other',
      holder: 'bob@desk',
      services: [
        {
          service: 'orders',
          host: 'orders.staging.svc.cluster.local',
          port: 8080,
          workload: 'Deployment/orders-v2',
          labels: { app: 'orders', version: 'v2' },
        },
      ],
    });
    const snapshot = cluster.list();
    await assert.rejects(
      applyFeatureEnvironment(client, other, {
        ...fast,
        ttlSeconds: 60,
        now: t0,
        agent,
        adapterFor: () => adapterFor('istio'),
      }),
      (e: unknown) =>
        e instanceof FilterHeldError && e.holder === 'alice@laptop' && e.sessionId === 'feature-pay',
    );
    assert.deepEqual(cluster.list(), snapshot, 'nothing written');
    // Another header value is another environment, on the same Services.
    checkFeatureConflict(
      leases,
      environment({ name: 'pay2', filter: { headers: { 'x-dev': { exact: 'pay2' } } } }),
      t0,
    );

    // A session stealing x-dev=pay on payments collides with the environment; on orders it joins it.
    const paymentsTarget = { namespace: 'staging', host: 'payments.staging.svc.cluster.local', port: 8080 };
    const onPayments = sessionIntent('dev-c', {
      target: paymentsTarget,
      mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: 'pay' } } } },
    });
    assert.throws(
      () => checkFilterConflict(leases, onPayments, t0),
      (e: unknown) => e instanceof FilterHeldError && e.holder === 'alice@laptop',
    );
    const joining = sessionIntent('dev-c', { mode: onPayments.mode });
    checkFilterConflict(leases, joining, t0);
    // ...and the environment refuses a Service a live session steals the header on.
    const stealing = buildLease({ ...onPayments, holder: 'carol@box' }, t0);
    assert.throws(
      () => checkFeatureConflict([stealing], environment({ name: 'pay3' }), t0),
      (e: unknown) => e instanceof FilterHeldError && e.holder === 'carol@box',
    );
  });

  test('down: the route goes, propagates, then the subset and the Lease; every routing object as before', async () => {
    const before = sampleRouting();
    const cluster = new InMemoryCluster(before);
    const original = cluster.list();
    const { client } = await up(cluster);
    const events: string[] = [];
    const result = await removeFeatureEnvironment(
      memoryClient(cluster, { beforeWrite: (w) => events.push(describeWrites([w])[0] as string) }),
      'staging',
      'pay',
      allAdapters(),
      { ...fast, waitForPropagation: async () => void events.push('propagated') },
    );
    assert.equal(result.found, true);
    assert.deepEqual(events, [
      'replace VirtualService',
      'propagated',
      'replace DestinationRule',
      'delete Lease',
    ]);
    assertRouting(original, cluster);
    assert.equal(cluster.list().length, original.length, 'nothing left behind');
    const again = await removeFeatureEnvironment(client, 'staging', 'pay', allAdapters(), fast);
    assert.equal(again.found, false);
  });

  test('an expired environment is reverted exactly by the janitor (detour clean, the agent)', async () => {
    const cluster = new InMemoryCluster(sampleRouting());
    const original = cluster.list();
    const { client } = await up(cluster);
    const beforeExpiry = await runJanitor(
      client,
      allAdapters(),
      () => new Date(t0.getTime() + 7 * 3600_000),
      fast,
    );
    assert.deepEqual(beforeExpiry.dead, []);
    const expired = await runJanitor(
      client,
      allAdapters(),
      () => new Date(t0.getTime() + 8 * 3600_000 + 1000),
      fast,
    );
    assert.deepEqual(
      expired.dead.map((d) => `${d.sessionId} ${d.why}`),
      ['feature-pay lease-expired'],
    );
    assertRouting(original, cluster);
    assert.equal(cluster.list().length, original.length, 'the Lease went too');
  });

  test('istio-envoyfilter: the route is an EnvoyFilter with the probe header; down deletes it before the subset', async () => {
    const cluster = new InMemoryCluster(sampleRouting());
    const original = cluster.list();
    const { events } = await up(cluster, environment(), 'istio-envoyfilter');
    assert.deepEqual(events, [
      'create Lease',
      'replace DestinationRule',
      'propagated DestinationRule',
      'create EnvoyFilter',
    ]);
    const route = find<EnvoyFilter>(cluster, 'EnvoyFilter', 'detour-feature-pay').spec?.configPatches[0]
      ?.patch.value;
    assert.equal(route?.route.cluster, 'outbound|8080|feature-pay|payments.staging.svc.cluster.local');
    assert.deepEqual(route?.response_headers_to_add, [
      {
        header: { key: 'x-detour-feature', value: 'feature-pay upstream=%UPSTREAM_REMOTE_ADDRESS%' },
        append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
      },
    ]);
    const removed: string[] = [];
    await removeFeatureEnvironment(
      memoryClient(cluster, { beforeWrite: (w) => removed.push(describeWrites([w])[0] as string) }),
      'staging',
      'pay',
      allAdapters(),
      fast,
    );
    assert.deepEqual(removed, ['delete EnvoyFilter', 'replace DestinationRule', 'delete Lease']);
    assertRouting(original, cluster);
    assert.equal(cluster.list().length, original.length);
  });

  test('the probe header: subset and upstream address, or nothing for anything else', () => {
    assert.deepEqual(parseFeatureResponse('feature-pay upstream=198.18.1.7:8080'), {
      subset: 'feature-pay',
      upstream: '198.18.1.7:8080',
    });
    assert.equal(parseFeatureResponse(undefined), undefined);
    assert.equal(parseFeatureResponse('feature-pay'), undefined);
  });
});
