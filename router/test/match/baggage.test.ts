import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  baggageMatch,
  baggageMemberOf,
  compileFilter,
  exampleRequest,
  formatFilter,
  methodMatch,
  parseBaggageMember,
  parsePathExpression,
  validateFilter,
} from '../../src/match/index.ts';

describe('--baggage key=value', () => {
  const filter = validateFilter({ headers: { baggage: baggageMatch(parseBaggageMember('env=dev-a')) } });
  const matcher = compileFilter(filter);
  const carries = (headers: Record<string, string | string[]>) =>
    matcher.matches({ method: 'GET', path: '/', headers });

  test('matches the member anywhere in the list, with properties and optional whitespace', () => {
    for (const value of [
      'env=dev-a',
      'env=dev-a;ttl=30',
      'userId=alice,env=dev-a',
      'userId=alice, env = dev-a ;p=1, other=x',
      '\tenv=dev-a\t',
    ]) {
      assert.equal(carries({ baggage: value }), true, value);
    }
    // Two baggage headers are one list (Envoy joins them with ",").
    assert.equal(carries({ baggage: ['userId=alice', 'env=dev-a'] }), true);
  });

  test('does not match another key, another value, or the text inside a property', () => {
    for (const value of [
      'env=dev-ab',
      'xenv=dev-a',
      'env=dev-b',
      'env=dev',
      'userId=alice;env=dev-a',
      'env2=dev-a,env=dev-b',
      '',
    ]) {
      assert.equal(carries({ baggage: value }), false, value);
    }
    assert.equal(carries({}), false, 'no baggage header');
  });

  test('quotes regex metacharacters of keys and values', () => {
    const member = { key: 'a.b*', value: 'x+y|z' };
    const regex = compileFilter({ headers: { baggage: baggageMatch(member) } });
    assert.equal(regex.matches({ method: 'GET', path: '/', headers: { baggage: 'a.b*=x+y|z' } }), true);
    assert.equal(regex.matches({ method: 'GET', path: '/', headers: { baggage: 'aXb*=x+y|z' } }), false);
    assert.deepEqual(baggageMemberOf(baggageMatch(member)), member);
    assert.equal(baggageMemberOf({ regex: 'env=.*' }), undefined);
  });

  test('prints as the member, and a probe can carry it', () => {
    assert.equal(formatFilter(filter), 'baggage[env=dev-a]');
    assert.deepEqual(exampleRequest(filter, { baggage: 'env=dev-a' })?.headers, { baggage: 'env=dev-a' });
    assert.equal(exampleRequest(filter), undefined, 'a regex needs an example');
    assert.equal(exampleRequest(filter, { baggage: 'env=other' }), undefined, 'the example must match');
  });

  test('refuses what baggage cannot carry, naming the fix', () => {
    assert.throws(() => parseBaggageMember('env'), { code: 'DETOUR_INVALID_FILTER', message: /key=value/ });
    assert.throws(() => parseBaggageMember('env='), { message: /value is empty/ });
    assert.throws(() => parseBaggageMember('env=dev a'), { message: /percent-encoded.*%20/ });
    assert.throws(() => parseBaggageMember('e v=x'), { message: /not a token/ });
  });
});

describe('--path and --method', () => {
  test('path forms: exact, ^= prefix, ~= regex', () => {
    assert.deepEqual(parsePathExpression('/orders'), { exact: '/orders' });
    assert.deepEqual(parsePathExpression('^=/api/'), { prefix: '/api/' });
    assert.deepEqual(parsePathExpression('~=/orders/[0-9]+'), { regex: '/orders/[0-9]+' });
  });

  test('refuses paths that never match, naming the forms', () => {
    assert.throws(() => parsePathExpression('orders'), {
      code: 'DETOUR_INVALID_FILTER',
      message: /--path "orders".*paths start with "\/".*\^=\/prefix/,
    });
    assert.throws(() => parsePathExpression('/a?b=1'), { message: /query/ });
    assert.throws(() => parsePathExpression('~=(a'), { message: /not valid RE2/ });
  });

  test('methods: one is exact, several an alternation, upper-cased', () => {
    assert.deepEqual(methodMatch(['post']), { exact: 'POST' });
    assert.deepEqual(methodMatch(['GET', 'HEAD', 'get']), { regex: 'GET|HEAD' });
    assert.equal(methodMatch([]), undefined);
    assert.throws(() => methodMatch(['GE T']), { message: /--method "GE T"/ });
  });

  test('a probe takes the filter’s path and method, and only when the agent’s matcher agrees', () => {
    const filter = validateFilter({
      headers: { 'x-dev': { exact: 'dev-a' } },
      uri: parsePathExpression('^=/api/'),
      method: methodMatch(['POST']),
    });
    assert.deepEqual(exampleRequest(filter), {
      method: 'POST',
      path: '/api/',
      headers: { 'x-dev': 'dev-a' },
    });
    const several = validateFilter({ method: methodMatch(['PUT', 'POST']) });
    assert.equal(exampleRequest(several)?.method, undefined);
    assert.equal(exampleRequest(several, { ':method': 'PUT' })?.method, 'PUT');
    assert.equal(exampleRequest(validateFilter({ uri: { regex: '/a/.*' } })), undefined);
    assert.equal(exampleRequest(validateFilter({ uri: { exact: '/a/../b' } })), undefined, 'URL rewrites it');
    assert.deepEqual(exampleRequest(validateFilter({ headers: { 'x-dev': {} } })), {
      method: 'HEAD',
      path: '/',
      headers: { 'x-dev': 'detour-probe' },
    });
  });
});
