import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { restoredExactly } from '../src/canonical.ts';
import { InvalidIntentError, UneditableObjectError, UnknownTargetError } from '../src/errors.ts';
import { InMemoryCluster } from '../src/in-memory-cluster.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import type { Service } from '../src/service/adapter.ts';
import { createServiceAdapter } from '../src/service/adapter.ts';
import { intent, roundTrip, sessionIntent } from './support.ts';

const adapter = createServiceAdapter();

function orders(): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'orders',
      namespace: 'staging',
      labels: { app: 'orders' },
      resourceVersion: '10',
      uid: 'svc-uid',
    },
    spec: {
      type: 'ClusterIP',
      clusterIP: '10.96.0.42',
      selector: { app: 'orders', tier: 'backend' },
      ports: [
        { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
        { name: 'grpc', port: 9090, targetPort: 9090, protocol: 'TCP', appProtocol: 'grpc' },
      ],
    },
  };
}

describe('service adapter (no mesh)', () => {
  test('shadow Service for the original pods first, then the selector and port pointed at the agent', () => {
    const plan = adapter.plan([orders()], intent());
    assert.deepEqual(
      plan.writes.map((w) => `${w.op} ${w.op === 'delete' ? w.ref.name : w.object.metadata.name}`),
      ['create orders-detour-shadow', 'replace orders'],
    );
    const [shadowWrite, svcWrite] = plan.writes;
    assert.ok(shadowWrite?.op === 'create' && svcWrite?.op === 'replace');
    assert.deepEqual(shadowWrite.object.spec, {
      selector: { app: 'orders', tier: 'backend' },
      ports: [
        { port: 8080, name: 'http', targetPort: 'http', protocol: 'TCP' },
        { port: 9090, name: 'grpc', targetPort: 9090, protocol: 'TCP', appProtocol: 'grpc' },
      ],
    });
    const spec = svcWrite.object.spec as Service['spec'];
    assert.deepEqual(spec?.selector, { app: 'detour-agent' });
    assert.deepEqual(spec?.ports?.[0], { name: 'http', port: 8080, targetPort: 15080, protocol: 'TCP' });
    assert.deepEqual(spec?.ports?.[1], orders().spec?.ports?.[1]);
    assert.equal(spec?.clusterIP, '10.96.0.42');
    assert.match(plan.warnings.join('\n'), /also serves port\(s\) 9090/);
  });

  test('apply then revert restores exactly', () => {
    roundTrip(adapter, [orders()], intent());
  });

  test("someone else's edits while the session lives are kept (a new port, a label); the selector goes back", () => {
    const cluster = new InMemoryCluster([orders()]);
    const [before] = cluster.list();
    cluster.applyPlan(adapter.plan(cluster.list(), intent()));
    cluster.edit({ apiVersion: 'v1', kind: 'Service', namespace: 'staging', name: 'orders' }, (o) => {
      (o.spec as Service['spec'])?.ports?.push({ name: 'metrics', port: 9100, targetPort: 9100 });
      o.metadata.labels = { ...o.metadata.labels, owner: 'team-b' };
    });
    cluster.applyPlan(adapter.planRevert(cluster.list(), 'dev-a'));
    const after = cluster.list().find((o) => o.metadata.name === 'orders');
    assert.deepEqual(
      restoredExactly(before, after, [
        { op: 'set', path: ['spec', 'ports', 2], value: { name: 'metrics', port: 9100, targetPort: 9100 } },
        { op: 'set', path: ['metadata', 'labels', 'owner'], value: 'team-b' },
      ]),
      { ok: true },
    );
    assert.equal(cluster.list().length, 1);
  });

  test('several sessions: the last one restores; the shadow lives until then', () => {
    const cluster = new InMemoryCluster([orders()]);
    const [before] = cluster.list();
    cluster.applyPlan(adapter.plan(cluster.list(), sessionIntent('dev-a')));
    cluster.applyPlan(adapter.plan(cluster.list(), sessionIntent('dev-b')));
    cluster.applyPlan(adapter.planRevert(cluster.list(), 'dev-a'));
    assert.equal(cluster.list().length, 2);
    assert.deepEqual((cluster.list()[0]?.spec as Service['spec'])?.selector, { app: 'detour-agent' });
    cluster.applyPlan(adapter.planRevert(cluster.list(), 'dev-b'));
    assert.deepEqual(restoredExactly(before, cluster.list()[0]), { ok: true });
    assert.equal(cluster.list().length, 1);
  });

  test('refusals: unknown Service, no selector, unknown port, modes that need a mesh', () => {
    assert.throws(() => adapter.plan([], intent()), UnknownTargetError);
    const headless: KubeObject = { ...orders(), spec: { ports: [{ port: 8080 }] } };
    assert.throws(
      () => adapter.plan([headless], intent()),
      (e: unknown) => e instanceof UneditableObjectError && e.field === 'spec.selector',
    );
    assert.throws(
      () =>
        adapter.plan(
          [orders()],
          intent({ target: { namespace: 'staging', host: 'orders.staging.svc.cluster.local', port: 7000 } }),
        ),
      (e: unknown) => e instanceof InvalidIntentError && /Pick one of 8080, 9090/.test(e.message),
    );
    assert.throws(
      () =>
        adapter.plan(
          [orders()],
          intent({ mode: { kind: 'mirror', filter: { headers: { 'x-dev': { exact: 'a' } } } } }),
        ),
      InvalidIntentError,
    );
  });
});
