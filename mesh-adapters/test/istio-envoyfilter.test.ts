import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UneditableObjectError } from '../src/errors.ts';
import type { EnvoyFilter } from '../src/istio-envoyfilter/adapter.ts';
import { createIstioEnvoyFilterAdapter } from '../src/istio-envoyfilter/adapter.ts';
import { filterToRouteMatch } from '../src/istio-envoyfilter/envoy-route.ts';
import type { SessionIntent } from '../src/session-intent.ts';
import { intent, loadFixture, roundTrip } from './support.ts';

const adapter = createIstioEnvoyFilterAdapter();

function envoyFilter(
  i: SessionIntent = intent(),
  objects = loadFixture('virtualservices/argocd.yaml'),
): EnvoyFilter {
  const plan = adapter.plan(objects, i);
  const write = plan.writes.find((w) => w.op === 'create' && w.object.kind === 'EnvoyFilter');
  assert.ok(write && write.op === 'create');
  return write.object as EnvoyFilter;
}

describe('istio-envoyfilter adapter', () => {
  test('HTTP_ROUTE INSERT_FIRST into the outbound vhost of host:port, to the agent cluster, in the root namespace', () => {
    const ef = envoyFilter();
    assert.equal(ef.metadata.namespace, 'istio-system');
    assert.equal(ef.metadata.name, 'detour-dev-a');
    assert.deepEqual(ef.spec?.configPatches, [
      {
        applyTo: 'HTTP_ROUTE',
        match: {
          context: 'SIDECAR_OUTBOUND',
          routeConfiguration: { portNumber: 8080, vhost: { name: 'orders.staging.svc.cluster.local:8080' } },
        },
        patch: {
          operation: 'INSERT_FIRST',
          value: {
            name: 'detour-dev-a',
            match: { prefix: '/', headers: [{ name: 'x-dev', string_match: { exact: 'dev-a' } }] },
            route: { cluster: 'outbound|15080||detour-agent.staging.svc.cluster.local' },
          },
        },
      },
    ]);
  });

  test('never touches the (GitOps-owned) VirtualService', () => {
    const plan = adapter.plan(loadFixture('virtualservices/argocd.yaml'), intent());
    assert.deepEqual(
      plan.writes.map((w) => (w.op === 'delete' ? w.ref.kind : w.object.kind)),
      ['EnvoyFilter'],
    );
  });

  test('filter translation: presence, absence, inverted values, method, exact path and regex', () => {
    assert.deepEqual(
      filterToRouteMatch({
        headers: { 'x-dev': {}, 'x-team': { regex: 'a|b' } },
        withoutHeaders: { 'x-skip': {}, 'x-env': { prefix: 'prod' } },
        uri: { exact: '/health' },
        method: { exact: 'GET' },
      }),
      {
        path: '/health',
        headers: [
          { name: 'x-dev', present_match: true },
          { name: 'x-team', string_match: { safe_regex: { regex: 'a|b' } } },
          { name: 'x-skip', present_match: false },
          { name: 'x-env', string_match: { prefix: 'prod' }, invert_match: true },
          { name: ':method', string_match: { exact: 'GET' } },
        ],
      },
    );
    assert.deepEqual(filterToRouteMatch({ uri: { regex: '/v[0-9]+/.*' } }), {
      safe_regex: { regex: '/v[0-9]+/.*' },
    });
    assert.deepEqual(filterToRouteMatch(undefined), { prefix: '/' });
  });

  test('mirror: the original cluster, and a mirror policy to the agent with the percentage', () => {
    const ef = envoyFilter(
      intent({ mode: { kind: 'mirror', filter: { headers: { 'x-dev': { exact: 'a' } } }, percent: 20 } }),
    );
    assert.deepEqual(ef.spec?.configPatches[0]?.patch.value.route, {
      cluster: 'outbound|8080||orders.staging.svc.cluster.local',
      request_mirror_policies: [
        {
          cluster: 'outbound|15080||detour-agent.staging.svc.cluster.local',
          runtime_fraction: { default_value: { numerator: 20, denominator: 'HUNDRED' } },
        },
      ],
    });
  });

  test('feature-env: subset cluster, DestinationRule subset first', () => {
    const i = intent({
      mode: {
        kind: 'feature-env',
        filter: { headers: { 'x-env': { exact: 'fx' } } },
        subset: { name: 'fx', labels: { env: 'fx' } },
      },
    });
    const plan = adapter.plan([], i);
    assert.deepEqual(
      plan.writes.map(
        (w) => `${w.op === 'delete' ? w.ref.kind : w.object.kind}${w.barrier ? '|barrier' : ''}`,
      ),
      ['DestinationRule|barrier', 'EnvoyFilter'],
    );
    const ef = plan.writes[1];
    assert.ok(ef && ef.op === 'create');
    assert.equal(
      (ef.object as EnvoyFilter).spec?.configPatches[0]?.patch.value.route.cluster,
      'outbound|8080|fx|orders.staging.svc.cluster.local',
    );
  });

  test('an EnvoyFilter of the same name that detour did not create is refused', () => {
    const foreign = {
      apiVersion: 'networking.istio.io/v1alpha3',
      kind: 'EnvoyFilter',
      metadata: { name: 'detour-dev-a', namespace: 'istio-system' },
      spec: { configPatches: [] },
    };
    assert.throws(
      () => adapter.plan([foreign], intent()),
      (e: unknown) => e instanceof UneditableObjectError && /not created by detour/.test(e.message),
    );
  });

  test('namespace option: the target namespace instead of the root', () => {
    const local = createIstioEnvoyFilterAdapter({ namespace: 'staging' });
    const plan = local.plan([], intent());
    const write = plan.writes[0];
    assert.ok(write && write.op === 'create');
    assert.equal(write.object.metadata.namespace, 'staging');
    assert.equal(
      write.object.metadata.ownerReferences?.[0]?.uid,
      'lease-uid-a',
      'Lease in the same namespace: owned',
    );
  });

  for (const mode of [
    intent().mode,
    { kind: 'steal-all' },
    { kind: 'mirror', filter: { headers: { 'x-dev': { exact: 'a' } } } },
    {
      kind: 'feature-env',
      filter: { headers: { 'x-env': { exact: 'fx' } } },
      subset: { name: 'fx', labels: { env: 'fx' } },
    },
  ] as SessionIntent['mode'][]) {
    test(`${mode.kind}: apply then revert restores exactly`, () => {
      roundTrip(adapter, loadFixture('virtualservices/argocd.yaml'), intent({ mode }));
    });
  }
});
