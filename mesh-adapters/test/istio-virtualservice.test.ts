import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UneditableObjectError } from '../src/errors.ts';
import { InMemoryCluster } from '../src/in-memory-cluster.ts';
import {
  CREATED_DEFAULT_ROUTE,
  createIstioVirtualServiceAdapter,
} from '../src/istio-virtualservice/adapter.ts';
import type { DestinationRule, HTTPRoute, VirtualService } from '../src/istio-virtualservice/types.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import type { SessionIntent } from '../src/session-intent.ts';
import { SESSIONS_ANNOTATION } from '../src/session-records.ts';
import { assertRestored, fixtureNames, intent, loadFixture, roundTrip, sessionIntent } from './support.ts';

const adapter = createIstioVirtualServiceAdapter();

function planned(objects: KubeObject[], i: SessionIntent = intent()): VirtualService {
  const plan = adapter.plan(objects, i);
  const write = plan.writes.find((w) => w.op !== 'delete' && w.object.kind === 'VirtualService');
  assert.ok(write && write.op !== 'delete', 'a VirtualService write');
  return write.object as VirtualService;
}

function routes(vs: VirtualService): HTTPRoute[] {
  return vs.spec?.http ?? [];
}

const modes: Array<[string, SessionIntent['mode']]> = [
  ['steal', { kind: 'steal', filter: { headers: { 'x-dev': { exact: 'dev-a' } } } }],
  ['steal-all', { kind: 'steal-all' }],
  ['mirror', { kind: 'mirror', filter: { headers: { 'x-dev': { exact: 'dev-a' } } }, percent: 25 }],
  [
    'feature-env',
    {
      kind: 'feature-env',
      filter: { headers: { 'x-env': { exact: 'feature-x' } } },
      subset: { name: 'feature-x', labels: { env: 'feature-x' } },
    },
  ],
];

describe('istio VirtualService adapter: apply then revert restores exactly', () => {
  const editable = fixtureNames('virtualservices').filter(
    (f) => !['wildcard.yaml', 'argocd.yaml', 'tcp-only.yaml'].includes(f),
  );
  for (const fixture of editable) {
    for (const [name, mode] of modes) {
      if (name === 'mirror' && fixture === 'delegate.yaml') continue; // covered below: mirror refuses
      test(`${fixture}, ${name}`, () => {
        roundTrip(adapter, loadFixture(`virtualservices/${fixture}`), intent({ mode }));
      });
    }
  }
});

describe('istio VirtualService adapter: the route', () => {
  test('goes first, named detour-<session>, matching the filter and the port, to the agent', () => {
    const vs = planned(loadFixture('virtualservices/simple.yaml'));
    const [first, ...rest] = routes(vs);
    assert.deepEqual(first, {
      name: 'detour-dev-a',
      match: [{ headers: { 'x-dev': { exact: 'dev-a' } }, port: 8080 }],
      route: [{ destination: { host: 'detour-agent.staging.svc.cluster.local', port: { number: 15080 } } }],
    });
    assert.deepEqual(rest, routes(loadFixture('virtualservices/simple.yaml')[0] as VirtualService));
  });

  test('keeps every existing route in order with every field untouched (retries, rewrite, headers, mirror, fault, cors)', () => {
    const [original] = loadFixture('virtualservices/rich.yaml') as VirtualService[];
    const vs = planned([original as KubeObject]);
    assert.deepEqual(routes(vs).slice(1), routes(original as VirtualService));
    assert.deepEqual(vs.spec?.tcp, original?.spec?.tcp);
    assert.equal(vs.metadata.annotations?.team, 'payments');
    assert.equal(
      vs.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'],
      original?.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'],
    );
  });

  test('records the session in an annotation naming its Lease', () => {
    const vs = planned(loadFixture('virtualservices/simple.yaml'));
    const record = JSON.parse(vs.metadata.annotations?.[SESSIONS_ANNOTATION] ?? '{}');
    assert.deepEqual(record, {
      sessions: { 'dev-a': { holder: 'alice@laptop', lease: 'staging/detour-dev-a' } },
    });
  });

  test('is a replace with the observed resourceVersion as precondition', () => {
    const plan = adapter.plan(loadFixture('virtualservices/simple.yaml'), intent());
    assert.equal(plan.writes.length, 1);
    const [write] = plan.writes;
    assert.equal(write?.op, 'replace');
    assert.equal(write?.op === 'replace' && write.resourceVersion, '1001');
  });

  test('matches the authority too when the VirtualService serves several hosts', () => {
    const vs = planned(loadFixture('virtualservices/multi-host.yaml'));
    const [first] = routes(vs);
    const authority = first?.match?.[0]?.authority as { regex: string };
    const re = new RegExp(`^(?:${authority.regex})$`);
    for (const ok of ['orders', 'orders:8080', 'orders.staging', 'orders.staging.svc.cluster.local:8080']) {
      assert.ok(re.test(ok), ok);
    }
    for (const no of ['orders-legacy', 'orders-legacy.staging.svc.cluster.local', 'orders:9090', 'ordersx']) {
      assert.ok(!re.test(no), no);
    }
  });

  test('bound to gateways and mesh: one match for sidecars (with port), one for the gateways (without)', () => {
    const vs = planned(loadFixture('virtualservices/gateways-and-mesh.yaml'));
    const match = routes(vs)[0]?.match ?? [];
    assert.equal(match.length, 2);
    assert.deepEqual(match[0]?.gateways, ['mesh']);
    assert.equal(match[0]?.port, 8080);
    assert.deepEqual(match[1], {
      headers: { 'x-dev': { exact: 'dev-a' } },
      gateways: ['istio-system/public-gateway'],
    });
  });

  test('bound to gateways only: ignored for sidecars, a VirtualService is created, with a warning', () => {
    const plan = adapter.plan(loadFixture('virtualservices/gateway-only.yaml'), intent());
    assert.equal(plan.writes.length, 1);
    assert.equal(plan.writes[0]?.op, 'create');
    assert.match(plan.warnings.join('\n'), /only for gateways/);
  });

  test('delegate: the route goes first in the root, the delegate VirtualService is not touched', () => {
    const objects = loadFixture('virtualservices/delegate.yaml');
    const plan = adapter.plan(objects, intent());
    assert.equal(plan.writes.length, 1);
    const write = plan.writes[0];
    assert.ok(write && write.op === 'replace');
    assert.equal(write.object.metadata.name, 'orders-root');
    assert.equal(routes(write.object as VirtualService)[1]?.name, 'to-team-a');
  });

  test('several VirtualServices for the host: the oldest is edited, with a warning; exportTo is warned about', () => {
    const plan = adapter.plan(loadFixture('virtualservices/exported-and-duplicated.yaml'), intent());
    const write = plan.writes[0];
    assert.ok(write && write.op === 'replace');
    assert.equal(
      `${write.object.metadata.namespace}/${write.object.metadata.name}`,
      'routing/orders-routing',
    );
    assert.match(
      plan.warnings.join('\n'),
      /2 VirtualServices claim .* only the oldest, routing\/orders-routing/,
    );
    assert.match(plan.warnings.join('\n'), /exported only to/);
  });

  test('no VirtualService: creates one with the session route and a default route, owned by the Lease', () => {
    const plan = adapter.plan([], intent());
    const write = plan.writes[0];
    assert.ok(write && write.op === 'create');
    const vs = write.object as VirtualService;
    assert.equal(vs.metadata.name, 'detour-orders');
    assert.deepEqual(vs.spec?.hosts, ['orders.staging.svc.cluster.local']);
    assert.deepEqual(
      routes(vs).map((r) => r.name),
      ['detour-dev-a', CREATED_DEFAULT_ROUTE],
    );
    assert.deepEqual(routes(vs)[1]?.route, [{ destination: { host: 'orders.staging.svc.cluster.local' } }]);
    assert.deepEqual(vs.metadata.ownerReferences, [
      { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'detour-dev-a', uid: 'lease-uid-a' },
    ]);
  });

  test('a created VirtualService is shared: deleted only when the last session leaves', () => {
    const cluster = new InMemoryCluster([]);
    const a = sessionIntent('dev-a');
    const b = sessionIntent('dev-b');
    cluster.applyPlan(adapter.plan(cluster.list(), a));
    cluster.applyPlan(adapter.plan(cluster.list(), b));
    const [vs] = cluster.list() as VirtualService[];
    assert.deepEqual(
      routes(vs as VirtualService).map((r) => r.name),
      ['detour-dev-b', 'detour-dev-a', CREATED_DEFAULT_ROUTE],
    );
    assert.equal(vs?.metadata.ownerReferences?.length, 2);
    cluster.applyPlan(adapter.planRevert(cluster.list(), 'dev-a'));
    assert.equal(cluster.list().length, 1);
    cluster.applyPlan(adapter.planRevert(cluster.list(), 'dev-b'));
    assert.deepEqual(cluster.list(), []);
  });

  test('mirror: a copy of the default route (retries, timeout, cors, legacy mirror folded in) plus a mirror to the agent', () => {
    const [original] = loadFixture('virtualservices/rich.yaml') as VirtualService[];
    const vs = planned([original as KubeObject], intent({ mode: modes[2]?.[1] as SessionIntent['mode'] }));
    const ours = routes(vs)[0] as HTTPRoute;
    const base = routes(original as VirtualService).find((r) => r.name === 'default') as HTTPRoute;
    assert.deepEqual(ours.route, base.route);
    assert.equal(ours.timeout, '5s');
    assert.deepEqual(ours.retries, { attempts: 2 });
    assert.deepEqual(ours.corsPolicy, base.corsPolicy);
    assert.equal(ours.mirror, undefined);
    assert.deepEqual(ours.mirrors, [
      { destination: { host: 'orders-shadow.staging.svc.cluster.local' }, percentage: { value: 5 } },
      {
        destination: { host: 'detour-agent.staging.svc.cluster.local', port: { number: 15080 } },
        percentage: { value: 25 },
      },
    ]);
  });

  test('mirror: existing `mirrors` on the default route are kept', () => {
    const vs = planned(
      loadFixture('virtualservices/mirrors-and-no-http.yaml'),
      intent({ mode: modes[2]?.[1] as SessionIntent['mode'] }),
    );
    const mirrors = routes(vs)[0]?.mirrors ?? [];
    assert.deepEqual(
      mirrors.map((m) => m.destination.host),
      ['audit.staging.svc.cluster.local', 'detour-agent.staging.svc.cluster.local'],
    );
  });

  test('mirror refuses when the default route delegates, naming the field', () => {
    const objects = loadFixture('virtualservices/delegate.yaml');
    // Make the catch-all route the delegating one.
    const root = objects[0] as VirtualService;
    root.spec = {
      ...root.spec,
      http: [{ name: 'all', delegate: { name: 'orders-team-a', namespace: 'team-a' } }],
    };
    assert.throws(
      () => adapter.plan(objects, intent({ mode: modes[2]?.[1] as SessionIntent['mode'] })),
      (e: unknown) => e instanceof UneditableObjectError && /spec\.http\[0\]\.delegate/.test(e.message),
    );
  });

  test('feature-env: subset first (with a barrier), route second; revert in reverse order', () => {
    const mode = modes[3]?.[1] as SessionIntent['mode'];
    const cluster = new InMemoryCluster(loadFixture('virtualservices/simple.yaml'));
    const plan = adapter.plan(cluster.list(), intent({ mode }));
    assert.deepEqual(
      plan.writes.map(
        (w) => `${w.op} ${w.op === 'delete' ? w.ref.kind : w.object.kind}${w.barrier ? ' |barrier' : ''}`,
      ),
      ['create DestinationRule |barrier', 'replace VirtualService'],
    );
    const vs = plan.writes[1];
    assert.ok(vs && vs.op === 'replace');
    assert.deepEqual(routes(vs.object as VirtualService)[0]?.route, [
      { destination: { host: 'orders.staging.svc.cluster.local', subset: 'feature-x' } },
    ]);
    cluster.applyPlan(plan);
    const revert = adapter.planRevert(cluster.list(), 'dev-a');
    assert.deepEqual(
      revert.writes.map(
        (w) => `${w.op} ${w.op === 'delete' ? w.ref.kind : w.object.kind}${w.barrier ? ' |barrier' : ''}`,
      ),
      ['replace VirtualService |barrier', 'delete DestinationRule'],
    );
  });

  test('feature-env: an existing DestinationRule gets the subset and loses it again; a shared subset stays until the last user', () => {
    const dr = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'orders', namespace: 'staging', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: {
        host: 'orders',
        trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } },
        subsets: [{ name: 'v1', labels: { version: 'v1' } }],
      },
    };
    const objects = [...loadFixture('virtualservices/simple.yaml'), dr];
    const mode = modes[3]?.[1] as SessionIntent['mode'];
    const cluster = new InMemoryCluster(objects);
    const before = cluster.list();
    const a = sessionIntent('dev-a', { mode });
    const b = sessionIntent('dev-b', {
      mode: {
        ...(mode as Extract<SessionIntent['mode'], { kind: 'feature-env' }>),
        filter: { headers: { 'x-env': { exact: 'other' } } },
      },
    });
    cluster.applyPlan(adapter.plan(cluster.list(), a));
    cluster.applyPlan(adapter.plan(cluster.list(), b));
    const subsetsNow = () => {
      const dr = cluster.list().find((o) => o.kind === 'DestinationRule') as DestinationRule | undefined;
      return (dr?.spec?.subsets ?? []).map((s) => s.name);
    };
    assert.deepEqual(subsetsNow(), ['v1', 'feature-x']);
    cluster.applyPlan(adapter.planRevert(cluster.list(), 'dev-a'));
    assert.deepEqual(subsetsNow(), ['v1', 'feature-x'], 'still used by dev-b');
    cluster.applyPlan(adapter.planRevert(cluster.list(), 'dev-b'));
    assertRestored(before, cluster);
  });

  test('feature-env refuses a subset of the same name with other labels', () => {
    const dr = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'orders', namespace: 'staging' },
      spec: {
        host: 'orders.staging.svc.cluster.local',
        subsets: [{ name: 'feature-x', labels: { env: 'other' } }],
      },
    };
    assert.throws(
      () =>
        adapter.plan(
          [...loadFixture('virtualservices/simple.yaml'), dr],
          intent({ mode: modes[3]?.[1] as SessionIntent['mode'] }),
        ),
      /DestinationRule staging\/orders, field spec\.subsets\[name=feature-x\]\.labels/,
    );
  });
});

describe('istio VirtualService adapter: refusals name the object, the field and the fix', () => {
  const cases: Array<[string, RegExp]> = [
    [
      'wildcard.yaml',
      /VirtualService staging\/staging-wide, field spec\.hosts: .*Fix: use --mesh istio-envoyfilter/,
    ],
    [
      'argocd.yaml',
      /VirtualService staging\/orders, field metadata \(annotation argocd\.argoproj\.io\/tracking-id=.*Argo CD.*Fix: use --mesh istio-envoyfilter/,
    ],
    [
      'tcp-only.yaml',
      /VirtualService staging\/orders, field spec\.tcp: port 8080 .* TCP.*Fix: name the Service port http-/,
    ],
  ];
  for (const [fixture, message] of cases) {
    test(fixture, () => {
      assert.throws(
        () => adapter.plan(loadFixture(`virtualservices/${fixture}`), intent()),
        (e: unknown) => {
          assert.ok(e instanceof UneditableObjectError);
          assert.equal(e.code, 'DETOUR_UNEDITABLE_OBJECT');
          assert.match(e.message, message);
          return true;
        },
      );
    });
  }

  test('GitOps-owned VirtualService is edited when explicitly allowed', () => {
    const allowed = createIstioVirtualServiceAdapter({ allowGitOpsOwned: true });
    roundTrip(allowed, loadFixture('virtualservices/argocd.yaml'), intent());
  });

  test('a foreign route named like ours is not overwritten', () => {
    const objects = loadFixture('virtualservices/simple.yaml');
    const vs = objects[0] as VirtualService;
    vs.spec?.http?.unshift({ name: 'detour-dev-a', route: [{ destination: { host: 'elsewhere' } }] });
    assert.throws(() => adapter.plan(objects, intent()), /field spec\.http\[name=detour-dev-a\]/);
  });

  test('bad input never reaches the planner output', () => {
    const objects = loadFixture('virtualservices/simple.yaml');
    assert.throws(
      () =>
        adapter.plan(
          objects,
          intent({ mode: { kind: 'steal', filter: { headers: { 'x dev': { exact: 'a' } } } } }),
        ),
      /x dev/,
    );
    assert.throws(
      () =>
        adapter.plan(
          objects,
          intent({ mode: { kind: 'steal', filter: { headers: { 'x-dev': { regex: '(?=a)' } } } } }),
        ),
      /RE2/,
    );
    assert.throws(
      () => adapter.plan(objects, intent({ mode: { kind: 'steal', filter: {} } })),
      /no conditions/,
    );
  });
});
