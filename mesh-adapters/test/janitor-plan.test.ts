import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { restoredExactly } from '../src/canonical.ts';
import { InMemoryCluster } from '../src/in-memory-cluster.ts';
import { allAdapters } from '../src/index.ts';
import type { VirtualService } from '../src/istio-virtualservice/types.ts';
import { planJanitor } from '../src/janitor-plan.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import { refOf, sameObject } from '../src/k8s-object.ts';
import type { Lease } from '../src/lease.ts';
import { buildLease } from '../src/lease.ts';
import type { SessionIntent } from '../src/session-intent.ts';
import { loadFixture, sessionIntent } from './support.ts';

const t0 = new Date('2026-11-21T21:00:00.000Z');
const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
const adapters = allAdapters();

function start(cluster: InMemoryCluster, leases: Lease[], i: SessionIntent, kind: string, when = t0): void {
  const adapter = adapters.find((a) => a.kind === kind);
  assert.ok(adapter);
  leases.push(buildLease(i, when));
  cluster.applyPlan(adapter.plan(cluster.list(), i));
}

function janitor(cluster: InMemoryCluster, leases: Lease[], now: Date) {
  return planJanitor({ objects: cluster.list(), leases, now, adapters });
}

describe('janitor plan', () => {
  test('reverts the sessions whose Lease expired or is gone, keeps the live ones, idempotent', () => {
    const original = [
      ...loadFixture('virtualservices/rich.yaml'),
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'payments', namespace: 'staging' },
        spec: { selector: { app: 'payments' }, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] },
      } as KubeObject,
    ];
    const cluster = new InMemoryCluster(original);
    const before = cluster.list();
    const leases: Lease[] = [];
    const fe = {
      kind: 'feature-env',
      filter: { headers: { 'x-env': { exact: 'fx' } } },
      subset: { name: 'fx', labels: { env: 'fx' } },
    } as const;
    start(cluster, leases, sessionIntent('dead-vs'), 'istio');
    start(cluster, leases, sessionIntent('live-vs'), 'istio', at(100));
    start(cluster, leases, sessionIntent('dead-fe', { mode: fe }), 'istio');
    start(cluster, leases, sessionIntent('dead-ef'), 'istio-envoyfilter');
    const paymentsTarget = { namespace: 'staging', host: 'payments.staging.svc.cluster.local', port: 8080 };
    start(cluster, leases, sessionIntent('dead-svc', { target: paymentsTarget }), 'service');
    start(cluster, leases, sessionIntent('gone-gw'), 'gateway-api');
    leases.splice(
      leases.findIndex((l) => l.metadata.name === 'detour-gone-gw'),
      1,
    ); // its Lease was deleted

    const plan = janitor(cluster, leases, at(110));
    assert.deepEqual(
      plan.dead.map((d) => `${d.sessionId}:${d.why}`),
      [
        'dead-ef:lease-expired',
        'dead-fe:lease-expired',
        'dead-svc:lease-expired',
        'dead-vs:lease-expired',
        'gone-gw:lease-gone',
      ],
    );
    // One write per object; routes before what they point to; expired Leases last.
    const kinds = plan.writes.map((w) => `${w.op} ${w.op === 'delete' ? w.ref.kind : w.object.kind}`);
    assert.ok(
      kinds.indexOf('replace VirtualService') < kinds.indexOf('delete DestinationRule'),
      kinds.join(', '),
    );
    assert.equal(kinds.filter((k) => k === 'replace VirtualService').length, 1);
    assert.equal(kinds.filter((k) => k.endsWith('Lease')).length, 4);

    cluster.applyPlan({
      writes: plan.writes.filter((w) => (w.op === 'delete' ? w.ref.kind : w.object.kind) !== 'Lease'),
      warnings: [],
    });
    const live = leases.filter((l) => l.metadata.name === 'detour-live-vs');
    assert.deepEqual(janitor(cluster, live, at(110)).writes, [], 'idempotent');

    // Only the live session's route remains; its own revert then restores everything exactly.
    const vs = cluster.list().find((o) => o.kind === 'VirtualService') as VirtualService | undefined;
    assert.deepEqual(
      (vs?.spec?.http ?? []).map((r) => r.name).filter((n) => n?.startsWith('detour-')),
      ['detour-live-vs'],
    );
    const istio = adapters.find((a) => a.kind === 'istio');
    cluster.applyPlan(istio?.planRevert(cluster.list(), 'live-vs') ?? { writes: [], warnings: [] });
    for (const object of before) {
      const after = cluster.list().find((o) => sameObject(refOf(o), refOf(object)));
      assert.deepEqual(restoredExactly(object, after), { ok: true }, object.metadata.name);
    }
    assert.equal(cluster.list().length, before.length);
  });

  test('nothing to do when every session is alive', () => {
    const cluster = new InMemoryCluster(loadFixture('virtualservices/simple.yaml'));
    const leases: Lease[] = [];
    start(cluster, leases, sessionIntent('a'), 'istio');
    start(cluster, leases, sessionIntent('b'), 'istio-envoyfilter');
    assert.deepEqual(janitor(cluster, leases, at(5)).writes, []);
  });

  test('an expired session on a VirtualService detour created deletes it when no one else is in it', () => {
    const cluster = new InMemoryCluster([]);
    const leases: Lease[] = [];
    start(cluster, leases, sessionIntent('a'), 'istio');
    start(cluster, leases, sessionIntent('b'), 'istio');
    const plan = janitor(cluster, leases, at(100));
    assert.deepEqual(
      plan.writes.map((w) => `${w.op} ${w.op === 'delete' ? w.ref.kind : w.object.kind}`),
      ['delete VirtualService', 'delete Lease', 'delete Lease'],
    );
  });

  test('orphans: a detour-created object no session is in any more goes; an expired Lease with no marks goes', () => {
    const orphan: KubeObject = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: {
        name: 'detour-orders',
        namespace: 'staging',
        labels: { 'app.kubernetes.io/managed-by': 'detour' },
      },
      spec: { hosts: ['orders.staging.svc.cluster.local'], http: [{ name: 'detour-default', route: [] }] },
    };
    const lonely = buildLease(sessionIntent('early-death'), t0);
    const plan = planJanitor({ objects: [orphan], leases: [lonely], now: at(100), adapters });
    assert.deepEqual(
      plan.writes.map((w) => `${w.op} ${w.op === 'delete' ? w.ref.name : w.object.metadata.name}`),
      ['delete detour-orders', 'delete detour-early-death'],
    );
  });
});
