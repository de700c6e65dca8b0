import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UnsupportedByAdapterError } from '../src/errors.ts';
import type { GatewayHTTPRoute } from '../src/gateway-api/adapter.ts';
import { createGatewayApiAdapter } from '../src/gateway-api/adapter.ts';
import { InMemoryCluster } from '../src/in-memory-cluster.ts';
import type { SessionIntent } from '../src/session-intent.ts';
import { intent, loadFixture, roundTrip } from './support.ts';

const adapter = createGatewayApiAdapter();
const routes = () => loadFixture('gateway-api/producer-routes.yaml');

function created(plan: ReturnType<typeof adapter.plan>, kind = 'HTTPRoute'): GatewayHTTPRoute {
  const write = plan.writes.find((w) => w.op === 'create' && w.object.kind === kind);
  assert.ok(write && write.op === 'create', `a ${kind} is created`);
  return write.object as GatewayHTTPRoute;
}

describe('gateway-api adapter (GAMMA)', () => {
  test('an HTTPRoute of the session, parentRef the Service and port, backend the agent; the rest to the Service', () => {
    const route = created(adapter.plan([], intent()));
    assert.equal(route.metadata.name, 'detour-dev-a');
    assert.deepEqual(route.spec?.parentRefs, [{ group: '', kind: 'Service', name: 'orders', port: 8080 }]);
    assert.deepEqual(route.spec?.rules, [
      {
        matches: [
          {
            headers: [{ type: 'Exact', name: 'x-dev', value: 'dev-a' }],
            path: { type: 'PathPrefix', value: '/' },
          },
        ],
        backendRefs: [{ group: '', kind: 'Service', name: 'detour-agent', port: 15080, weight: 1 }],
      },
      // GAMMA: once an HTTPRoute attaches to the Service, unmatched requests would get a 404.
      {
        matches: [{ path: { type: 'PathPrefix', value: '/' } }],
        backendRefs: [{ group: '', kind: 'Service', name: 'orders', port: 8080, weight: 1 }],
      },
    ]);
    assert.deepEqual(route.metadata.labels, {
      'app.kubernetes.io/managed-by': 'detour',
      'detour.dev/session': 'dev-a',
    });
  });

  test('copies the matches of routes already attached so the session rule is always the more specific', () => {
    const route = created(adapter.plan(routes(), intent()));
    assert.equal(route.spec?.rules?.length, 1, 'the attached routes keep serving the rest');
    assert.deepEqual(route.spec?.rules?.[0]?.matches, [
      {
        path: { type: 'PathPrefix', value: '/api' },
        headers: [{ type: 'Exact', name: 'x-dev', value: 'dev-a' }],
      },
      {
        path: { type: 'PathPrefix', value: '/' },
        headers: [{ type: 'Exact', name: 'x-dev', value: 'dev-a' }],
      },
    ]);
  });

  test('mirror keeps each rule’s own backends and filters and adds a RequestMirror to the agent', () => {
    const mode: SessionIntent['mode'] = {
      kind: 'mirror',
      filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    };
    const route = created(adapter.plan(routes(), intent({ mode })));
    const rules = route.spec?.rules ?? [];
    assert.deepEqual(rules[0]?.backendRefs, [{ name: 'orders-v2', port: 8080 }]);
    assert.deepEqual(rules[0]?.timeouts, { request: '10s' });
    assert.deepEqual(rules[0]?.filters, [
      {
        type: 'RequestMirror',
        requestMirror: { backendRef: { group: '', kind: 'Service', name: 'detour-agent', port: 15080 } },
      },
    ]);
  });

  test('agent in another namespace: a ReferenceGrant there, created before and deleted after the route', () => {
    const i = intent({ agent: { name: 'detour-agent', namespace: 'detour-system', port: 15080 } });
    const cluster = new InMemoryCluster(routes());
    const plan = adapter.plan(cluster.list(), i);
    assert.deepEqual(
      plan.writes.map((w) => (w.op === 'delete' ? w.ref.kind : w.object.kind)),
      ['ReferenceGrant', 'HTTPRoute'],
    );
    const grant = created(plan, 'ReferenceGrant');
    assert.equal(grant.metadata.namespace, 'detour-system');
    assert.equal(created(plan).spec?.rules?.[0]?.backendRefs?.[0]?.namespace, 'detour-system');
    cluster.applyPlan(plan);
    const revert = adapter.planRevert(cluster.list(), 'dev-a');
    assert.deepEqual(
      revert.writes.map((w) => (w.op === 'delete' ? w.ref.kind : w.object.kind)),
      ['HTTPRoute', 'ReferenceGrant'],
    );
  });

  test('prefix and presence become RE2 expressions (Gateway API has no prefix header match)', () => {
    const mode: SessionIntent['mode'] = {
      kind: 'steal',
      filter: { headers: { 'x-dev': { prefix: 'dev.' }, 'x-debug': {} }, uri: { prefix: '/api' } },
    };
    const route = created(adapter.plan([], intent({ mode })));
    assert.deepEqual(route.spec?.rules?.[0]?.matches?.[0], {
      headers: [
        { type: 'RegularExpression', name: 'x-dev', value: 'dev\\..*' },
        { type: 'RegularExpression', name: 'x-debug', value: '.*' },
      ],
      path: { type: 'RegularExpression', value: '/api.*' },
    });
  });

  for (const [what, mode, field] of [
    [
      'withoutHeaders',
      { kind: 'steal', filter: { headers: { 'x-dev': { exact: 'a' } }, withoutHeaders: { 'x-skip': {} } } },
      'filter.withoutHeaders',
    ],
    ['method regex', { kind: 'steal', filter: { method: { regex: 'GET|POST' } } }, 'filter.method'],
    [
      'feature-env',
      {
        kind: 'feature-env',
        filter: { headers: { 'x-env': { exact: 'f' } } },
        subset: { name: 'f', labels: { env: 'f' } },
      },
      'mode',
    ],
  ] as Array<[string, SessionIntent['mode'], string]>) {
    test(`refuses ${what}, naming the field and the fix`, () => {
      assert.throws(
        () => adapter.plan(routes(), intent({ mode })),
        (e: unknown) =>
          e instanceof UnsupportedByAdapterError && e.field === field && /--mesh istio/.test(e.message),
      );
    });
  }

  for (const [name, mode] of [
    ['steal', intent().mode],
    ['steal-all', { kind: 'steal-all' }],
    ['mirror', { kind: 'mirror', filter: { headers: { 'x-dev': { exact: 'dev-a' } } }, percent: 10 }],
  ] as Array<[string, SessionIntent['mode']]>) {
    test(`${name}: apply then revert restores exactly`, () => {
      roundTrip(adapter, routes(), intent({ mode }));
      roundTrip(
        adapter,
        routes(),
        intent({ mode, agent: { name: 'detour-agent', namespace: 'detour-system', port: 15080 } }),
      );
    });
  }
});
