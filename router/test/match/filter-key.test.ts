import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { filterKey, filtersOverlap, type RouteFilter } from '../../src/match/index.ts';

describe('filterKey', () => {
  test('is canonical JSON with sorted keys', () => {
    const filter: RouteFilter = { uri: { prefix: '/a' }, headers: { 'x-z': {}, 'x-a': { exact: '1' } } };
    assert.equal(filterKey(filter), '{"headers":{"x-a":{"exact":"1"},"x-z":{}},"uri":{"prefix":"/a"}}');
  });

  test('ignores how the filter was written', () => {
    assert.equal(
      filterKey({ headers: { 'X-Dev': { exact: 'dev-a' } }, withoutHeaders: {} }),
      filterKey({ headers: { 'x-dev': { exact: 'dev-a' } } }),
    );
  });

  test('differs when the meaning differs', () => {
    const keys = [
      { headers: { 'x-dev': { exact: 'dev-a' } } },
      { headers: { 'x-dev': { prefix: 'dev-a' } } },
      { withoutHeaders: { 'x-dev': { exact: 'dev-a' } } },
      { headers: { 'x-dev': { exact: 'dev-b' } } },
    ].map(filterKey);
    assert.equal(new Set(keys).size, keys.length);
  });
});

describe('filtersOverlap', () => {
  const exact = (value: string): RouteFilter => ({ headers: { 'x-dev': { exact: value } } });
  const cases: Array<{ name: string; a: RouteFilter; b: RouteFilter; expected: boolean }> = [
    { name: 'identical filters', a: exact('dev-a'), b: exact('dev-a'), expected: true },
    {
      name: 'same exact value, names in other case',
      a: exact('dev-a'),
      b: { headers: { 'X-Dev': { exact: 'dev-a' } } },
      expected: true,
    },
    { name: 'different exact values', a: exact('dev-a'), b: exact('dev-b'), expected: false },
    {
      name: 'exact inside a prefix',
      a: exact('dev-a'),
      b: { headers: { 'x-dev': { prefix: 'dev-' } } },
      expected: true,
    },
    {
      name: 'exact outside a prefix',
      a: exact('dev-a'),
      b: { headers: { 'x-dev': { prefix: 'qa-' } } },
      expected: false,
    },
    {
      name: 'exact matched by a regex',
      a: exact('dev-a'),
      b: { headers: { 'x-dev': { regex: 'dev-.*' } } },
      expected: true,
    },
    {
      name: 'exact not matched by a regex',
      a: exact('dev-a'),
      b: { headers: { 'x-dev': { regex: 'qa-.*' } } },
      expected: false,
    },
    {
      name: 'nested prefixes',
      a: { headers: { 'x-dev': { prefix: 'dev-' } } },
      b: { headers: { 'x-dev': { prefix: 'dev-a' } } },
      expected: true,
    },
    {
      name: 'unrelated prefixes',
      a: { headers: { 'x-dev': { prefix: 'dev-' } } },
      b: { headers: { 'x-dev': { prefix: 'qa-' } } },
      expected: false,
    },
    {
      name: 'two regexes are assumed to overlap',
      a: { headers: { 'x-dev': { regex: 'a.*' } } },
      b: { headers: { 'x-dev': { regex: 'b.*' } } },
      expected: true,
    },
    { name: 'presence and a value', a: { headers: { 'x-dev': {} } }, b: exact('dev-a'), expected: true },
    {
      name: 'different headers: one request can carry both',
      a: exact('dev-a'),
      b: { headers: { 'x-user': { exact: 'bob' } } },
      expected: true,
    },
    {
      name: 'required vs required-absent',
      a: exact('dev-a'),
      b: { withoutHeaders: { 'x-dev': {} } },
      expected: false,
    },
    {
      name: 'required vs excluded value',
      a: exact('dev-a'),
      b: { withoutHeaders: { 'x-dev': { exact: 'dev-a' } } },
      expected: false,
    },
    {
      name: 'required vs other excluded value',
      a: exact('dev-a'),
      b: { withoutHeaders: { 'x-dev': { exact: 'dev-b' } } },
      expected: true,
    },
    {
      name: 'prefix vs excluded shorter prefix',
      a: { headers: { 'x-dev': { prefix: 'dev-a' } } },
      b: { withoutHeaders: { 'x-dev': { prefix: 'dev-' } } },
      expected: false,
    },
    {
      name: 'different exact paths',
      a: { uri: { exact: '/a' } },
      b: { uri: { exact: '/b' } },
      expected: false,
    },
    {
      name: 'different methods',
      a: { method: { exact: 'GET' } },
      b: { method: { exact: 'POST' } },
      expected: false,
    },
    {
      name: 'same header, different paths',
      a: { ...exact('dev-a'), uri: { prefix: '/api' } },
      b: { ...exact('dev-a'), uri: { prefix: '/web' } },
      expected: false,
    },
  ];
  for (const { name, a, b, expected } of cases) {
    test(name, () => {
      assert.equal(filtersOverlap(a, b), expected);
      assert.equal(filtersOverlap(b, a), expected, 'symmetric');
    });
  }
});
