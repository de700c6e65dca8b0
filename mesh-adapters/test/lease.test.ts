import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FilterHeldError } from '../src/errors.ts';
import {
  buildEgressOnlyLease,
  buildLease,
  checkFilterConflict,
  expiresAt,
  isExpired,
  microTime,
  renewLease,
  summarizeLease,
} from '../src/lease.ts';
import { intent, sessionIntent } from './support.ts';

const t0 = new Date('2026-11-21T21:00:00.000Z');
const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);

describe('Lease', () => {
  test('built for a session: holder, target, filter, mode in annotations; MicroTime times; duration', () => {
    const lease = buildLease(intent(), t0, { adapter: 'istio' });
    assert.deepEqual(lease, {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: 'detour-dev-a',
        namespace: 'staging',
        labels: { 'app.kubernetes.io/managed-by': 'detour', 'detour.dev/session': 'dev-a' },
        annotations: {
          'detour.dev/holder': 'alice@laptop',
          'detour.dev/target': 'orders.staging.svc.cluster.local:8080',
          'detour.dev/mode': 'steal',
          'detour.dev/filter': '{"headers":{"x-dev":{"exact":"dev-a"}}}',
          'detour.dev/adapter': 'istio',
        },
      },
      spec: {
        holderIdentity: 'alice@laptop',
        leaseDurationSeconds: 30,
        acquireTime: '2026-11-21T21:00:00.000000Z',
        renewTime: '2026-11-21T21:00:00.000000Z',
        leaseTransitions: 0,
      },
    });
    assert.equal(microTime(new Date('2026-01-02T03:04:05.678Z')), '2026-01-02T03:04:05.678000Z');
  });

  test('expiry: renewTime + duration, grace, renewals, and a Lease without times is expired', () => {
    const lease = buildLease(intent(), t0);
    assert.equal(expiresAt(lease)?.toISOString(), '2026-11-21T21:00:30.000Z');
    assert.equal(isExpired(lease, at(30)), false);
    assert.equal(isExpired(lease, at(31)), true);
    assert.equal(isExpired(lease, at(31), 5), false);
    assert.equal(isExpired(renewLease(lease, at(25)), at(50)), false);
    assert.equal(isExpired({ ...lease, spec: {} }, t0), true);
  });

  test('summary round-trips what status shows', () => {
    assert.deepEqual(summarizeLease(buildLease(intent(), t0)), {
      sessionId: 'dev-a',
      holder: 'alice@laptop',
      since: '2026-11-21T21:00:00.000000Z',
      host: 'orders.staging.svc.cluster.local',
      port: 8080,
      mode: 'steal',
      filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    });
  });
});

describe('egress-only Lease', () => {
  const egress = buildEgressOnlyLease(
    {
      sessionId: 'eve',
      holder: 'eve@laptop',
      lease: { name: 'detour-eve', namespace: 'staging' },
      workload: 'Deployment/orders',
    },
    t0,
    { tokenSha256: 'abc', durationSeconds: 30 },
  );

  test('records holder, mode, workload and token hash; no target, no filter, no adapter', () => {
    assert.deepEqual(egress.metadata.annotations, {
      'detour.dev/holder': 'eve@laptop',
      'detour.dev/mode': 'egress-only',
      'detour.dev/workload': 'Deployment/orders',
      'detour.dev/token-sha256': 'abc',
    });
    assert.deepEqual(summarizeLease(egress), {
      sessionId: 'eve',
      holder: 'eve@laptop',
      since: '2026-11-21T21:00:00.000000Z',
      mode: 'egress-only',
      workload: 'Deployment/orders',
    });
  });

  test('holds nothing: a steal-all on the same namespace is not refused because of it', () => {
    checkFilterConflict([egress], sessionIntent('carol', { mode: { kind: 'steal-all' } }), at(1));
  });
});

describe('filter conflicts', () => {
  const held = buildLease(sessionIntent('bob'), t0);

  test('the same header and value on the same host and port: refused, naming holder and since', () => {
    const mine = sessionIntent('carol', {
      mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: 'bob' } } } },
    });
    assert.throws(
      () => checkFilterConflict([held], mine, at(10)),
      (e: unknown) =>
        e instanceof FilterHeldError &&
        e.holder === 'bob@host' &&
        e.since === '2026-11-21T21:00:00.000000Z' &&
        /already routed by session bob of bob@host since 2026-11-21T21:00:00/.test(e.message),
    );
  });

  test('another value, another port, another host, an expired holder, or the same session: allowed', () => {
    checkFilterConflict([held], sessionIntent('carol'), at(10));
    const same = { headers: { 'x-dev': { exact: 'bob' } } };
    checkFilterConflict(
      [held],
      sessionIntent('carol', {
        mode: { kind: 'steal', filter: same },
        target: { namespace: 'staging', host: 'orders.staging.svc.cluster.local', port: 9090 },
      }),
      at(10),
    );
    checkFilterConflict(
      [held],
      sessionIntent('carol', {
        mode: { kind: 'steal', filter: same },
        target: { namespace: 'staging', host: 'payments.staging.svc.cluster.local', port: 8080 },
      }),
      at(10),
    );
    checkFilterConflict([held], sessionIntent('carol', { mode: { kind: 'steal', filter: same } }), at(60));
    checkFilterConflict([held], sessionIntent('bob'), at(10));
  });

  test('steal-all collides with any live session on the host:port, both ways', () => {
    assert.throws(
      () => checkFilterConflict([held], sessionIntent('carol', { mode: { kind: 'steal-all' } }), at(1)),
      FilterHeldError,
    );
    const all = buildLease(sessionIntent('dave', { mode: { kind: 'steal-all' } }), t0);
    assert.throws(() => checkFilterConflict([all], sessionIntent('carol'), at(1)), /steal-all/);
  });
});
