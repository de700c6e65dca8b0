import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidIntentError } from '../src/errors.ts';
import type { SessionIntent } from '../src/session-intent.ts';
import { validateIntent } from '../src/session-intent.ts';
import { intent } from './support.ts';

describe('validateIntent', () => {
  test('a good intent passes; header names are lower-cased', () => {
    const out = validateIntent(
      intent({ mode: { kind: 'steal', filter: { headers: { 'X-Dev': { exact: 'a' } } } } }),
    );
    assert.deepEqual(out.mode, { kind: 'steal', filter: { headers: { 'x-dev': { exact: 'a' } } } });
  });

  const bad: Array<[string, Partial<SessionIntent>, RegExp]> = [
    ['session id', { sessionId: 'Dev_A' }, /sessionId: "Dev_A" is not a DNS label/],
    [
      'host not an FQDN',
      { target: { namespace: 'staging', host: 'orders', port: 8080 } },
      /target\.host: "orders" is not a Service FQDN\. Give <service>\.<namespace>\.svc/,
    ],
    [
      'host in another namespace',
      { target: { namespace: 'staging', host: 'orders.prod.svc.cluster.local', port: 8080 } },
      /not in namespace staging/,
    ],
    [
      'port',
      { target: { namespace: 'staging', host: 'orders.staging.svc.cluster.local', port: 0 } },
      /target\.port: 0 is not a port/,
    ],
    ['holder', { holder: 'alice' }, /holder: "alice" is not user@host/],
    [
      'invalid header name',
      { mode: { kind: 'steal', filter: { headers: { 'x dev': { exact: 'a' } } } } },
      /"x dev" is not a valid header name/,
    ],
    [
      'pseudo-header',
      { mode: { kind: 'steal', filter: { headers: { ':path': { exact: '/' } } } } },
      /pseudo-header/,
    ],
    [
      'invalid RE2',
      { mode: { kind: 'steal', filter: { headers: { 'x-dev': { regex: '(a' } } } } },
      /not valid RE2/,
    ],
    [
      'look-around',
      { mode: { kind: 'steal', filter: { headers: { 'x-dev': { regex: '(?!a)b' } } } } },
      /lookahead/,
    ],
    ['empty filter', { mode: { kind: 'steal', filter: {} } }, /no conditions/],
    [
      'mirror percent',
      { mode: { kind: 'mirror', filter: { headers: { 'x-dev': {} } }, percent: 0 } },
      /mirror\.percent/,
    ],
    [
      'subset without labels',
      {
        mode: {
          kind: 'feature-env',
          filter: { headers: { 'x-env': { exact: 'f' } } },
          subset: { name: 'f', labels: {} },
        },
      },
      /subset\.labels/,
    ],
  ];
  for (const [name, overrides, message] of bad) {
    test(`refuses: ${name}`, () => {
      assert.throws(
        () => validateIntent(intent(overrides)),
        (e: unknown) => {
          assert.ok(e instanceof Error && 'code' in e, 'a DetourError');
          assert.match((e as Error).message, message);
          return true;
        },
      );
    });
  }

  test('field names are carried on the error', () => {
    assert.throws(
      () => validateIntent(intent({ holder: 'x' })),
      (e: unknown) =>
        e instanceof InvalidIntentError && e.field === 'holder' && e.code === 'DETOUR_INVALID_INTENT',
    );
  });
});
