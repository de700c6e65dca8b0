import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  compileFilter,
  type MatchableRequest,
  type RouteFilter,
  validateFilter,
} from '../../src/match/index.ts';

function request(
  headers: Record<string, string | string[]> = {},
  path = '/',
  method = 'GET',
): MatchableRequest {
  return { method, path, headers };
}

/** The same request with its headers as Node's flat raw list, names capitalised as clients send them. */
function asFieldList(req: MatchableRequest): MatchableRequest {
  const fields: string[] = [];
  for (const [name, value] of Object.entries(req.headers as Record<string, string | string[]>)) {
    const sent = name.replace(/(^|-)[a-z]/g, (c) => c.toUpperCase());
    for (const one of typeof value === 'string' ? [value] : value) fields.push(sent, one);
  }
  return { ...req, headers: fields };
}

const cases: Array<{ name: string; filter: RouteFilter; req: MatchableRequest; expected: boolean }> = [
  // exact
  {
    name: 'exact: equal value',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': 'dev-a' }),
    expected: true,
  },
  {
    name: 'exact: other value',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': 'dev-b' }),
    expected: false,
  },
  {
    name: 'exact: values are case-sensitive',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': 'DEV-A' }),
    expected: false,
  },
  {
    name: 'exact: header missing',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    req: request(),
    expected: false,
  },
  {
    name: 'exact "": empty value',
    filter: { headers: { 'x-dev': { exact: '' } } },
    req: request({ 'x-dev': '' }),
    expected: true,
  },
  // prefix
  {
    name: 'prefix: starts with',
    filter: { headers: { 'x-dev': { prefix: 'dev-' } } },
    req: request({ 'x-dev': 'dev-a' }),
    expected: true,
  },
  {
    name: 'prefix: equal',
    filter: { headers: { 'x-dev': { prefix: 'dev-' } } },
    req: request({ 'x-dev': 'dev-' }),
    expected: true,
  },
  {
    name: 'prefix: contains, not starts',
    filter: { headers: { 'x-dev': { prefix: 'dev-' } } },
    req: request({ 'x-dev': 'my-dev-a' }),
    expected: false,
  },
  // regex: RE2 full match, as Envoy's safe_regex
  {
    name: 'regex: full match',
    filter: { headers: { 'x-dev': { regex: 'dev-[a-z]+' } } },
    req: request({ 'x-dev': 'dev-abc' }),
    expected: true,
  },
  {
    name: 'regex: is anchored at the end',
    filter: { headers: { 'x-dev': { regex: 'dev-[a-z]+' } } },
    req: request({ 'x-dev': 'dev-a1' }),
    expected: false,
  },
  {
    name: 'regex: is anchored at the start',
    filter: { headers: { 'x-dev': { regex: 'dev-[a-z]+' } } },
    req: request({ 'x-dev': 'xdev-a' }),
    expected: false,
  },
  {
    name: 'regex: alternation is anchored as a whole',
    filter: { headers: { 'x-dev': { regex: 'a|b' } } },
    req: request({ 'x-dev': 'ab' }),
    expected: false,
  },
  {
    name: 'regex: . reads UTF-8 as Envoy does',
    filter: { headers: { 'x-dev': { regex: 'caf.' } } },
    req: request({ 'x-dev': Buffer.from('café').toString('latin1') }),
    expected: true,
  },
  {
    name: 'exact: non-ASCII compared as bytes',
    filter: { headers: { 'x-dev': { exact: 'café' } } },
    req: request({ 'x-dev': Buffer.from('café').toString('latin1') }),
    expected: true,
  },
  // presence / absence
  {
    name: 'present: any value',
    filter: { headers: { 'x-dev': {} } },
    req: request({ 'x-dev': 'anything' }),
    expected: true,
  },
  {
    name: 'present: empty value counts',
    filter: { headers: { 'x-dev': {} } },
    req: request({ 'x-dev': '' }),
    expected: true,
  },
  {
    name: 'present: missing',
    filter: { headers: { 'x-dev': {} } },
    req: request({ other: 'x' }),
    expected: false,
  },
  {
    name: 'without {}: absent',
    filter: { withoutHeaders: { 'x-debug': {} } },
    req: request(),
    expected: true,
  },
  {
    name: 'without {}: present',
    filter: { withoutHeaders: { 'x-debug': {} } },
    req: request({ 'x-debug': '1' }),
    expected: false,
  },
  {
    name: 'without exact: other value',
    filter: { withoutHeaders: { 'x-dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': 'dev-b' }),
    expected: true,
  },
  {
    name: 'without exact: same value',
    filter: { withoutHeaders: { 'x-dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': 'dev-a' }),
    expected: false,
  },
  {
    name: 'without exact: missing header matches (treat_missing_header_as_empty)',
    filter: { withoutHeaders: { 'x-dev': { exact: 'dev-a' } } },
    req: request(),
    expected: true,
  },
  {
    name: 'without exact "": missing header is ""',
    filter: { withoutHeaders: { 'x-dev': { exact: '' } } },
    req: request(),
    expected: false,
  },
  {
    name: 'without regex: any match excludes',
    filter: { withoutHeaders: { 'x-dev': { regex: 'dev-.*' } } },
    req: request({ 'x-dev': 'dev-z' }),
    expected: false,
  },
  {
    name: 'headers and withoutHeaders together',
    filter: { headers: { 'x-dev': { prefix: 'dev-' } }, withoutHeaders: { 'x-dev': { exact: 'dev-b' } } },
    req: request({ 'x-dev': 'dev-a' }),
    expected: true,
  },
  // multi-valued: joined with "," like Envoy's getAllOfHeaderAsString
  {
    name: 'multi: joined with ","',
    filter: { headers: { 'x-dev': { exact: 'dev-a,dev-b' } } },
    req: request({ 'x-dev': ['dev-a', 'dev-b'] }),
    expected: true,
  },
  {
    name: 'multi: no per-value match',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': ['dev-a', 'dev-b'] }),
    expected: false,
  },
  {
    name: 'multi: regex sees the joined value',
    filter: { headers: { 'x-dev': { regex: '.*,dev-b' } } },
    req: request({ 'x-dev': ['dev-a', 'dev-b'] }),
    expected: true,
  },
  {
    name: 'multi: single element',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': ['dev-a'] }),
    expected: true,
  },
  {
    name: 'multi: empty array is absent',
    filter: { headers: { 'x-dev': {} } },
    req: request({ 'x-dev': [] }),
    expected: false,
  },
  // case of header names: filter names are normalised, request names arrive lower-case from Node
  {
    name: 'names: upper-case filter name',
    filter: validateFilter({ headers: { 'X-Dev': { exact: 'dev-a' } } }),
    req: request({ 'x-dev': 'dev-a' }),
    expected: true,
  },
  {
    name: 'names: unvalidated upper-case name still lower-cased',
    filter: { headers: { 'X-Dev': { exact: 'dev-a' } } },
    req: request({ 'x-dev': 'dev-a' }),
    expected: true,
  },
  // uri: query and fragment removed before path, prefix and regex matching
  { name: 'uri exact', filter: { uri: { exact: '/api' } }, req: request({}, '/api'), expected: true },
  {
    name: 'uri exact ignores the query',
    filter: { uri: { exact: '/api' } },
    req: request({}, '/api?x=1'),
    expected: true,
  },
  {
    name: 'uri exact ignores the fragment',
    filter: { uri: { exact: '/api' } },
    req: request({}, '/api#top'),
    expected: true,
  },
  {
    name: 'uri exact: longer path',
    filter: { uri: { exact: '/api' } },
    req: request({}, '/api/v1'),
    expected: false,
  },
  {
    name: 'uri prefix',
    filter: { uri: { prefix: '/api/' } },
    req: request({}, '/api/v1?x=1'),
    expected: true,
  },
  {
    name: 'uri prefix cannot reach into the query',
    filter: { uri: { prefix: '/api' } },
    req: request({}, '/?q=/api'),
    expected: false,
  },
  {
    name: 'uri prefix: path shorter than prefix',
    filter: { uri: { prefix: '/api/' } },
    req: request({}, '/api?/'),
    expected: false,
  },
  {
    name: 'uri regex on the path only',
    filter: { uri: { regex: '/api/[0-9]+' } },
    req: request({}, '/api/42?debug=1'),
    expected: true,
  },
  {
    name: 'uri regex: query is not part of the match',
    filter: { uri: { regex: '/api.*debug.*' } },
    req: request({}, '/api?debug=1'),
    expected: false,
  },
  {
    name: 'uri regex: "?" and "#" both cut',
    filter: { uri: { regex: '/a' } },
    req: request({}, '/a#x?y'),
    expected: true,
  },
  // method (:method)
  {
    name: 'method exact',
    filter: { method: { exact: 'POST' } },
    req: request({}, '/', 'POST'),
    expected: true,
  },
  {
    name: 'method exact: other',
    filter: { method: { exact: 'POST' } },
    req: request({}, '/', 'GET'),
    expected: false,
  },
  {
    name: 'method regex',
    filter: { method: { regex: 'GET|HEAD' } },
    req: request({}, '/', 'HEAD'),
    expected: true,
  },
  // all conditions must hold
  {
    name: 'all: every condition holds',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } }, uri: { prefix: '/api' }, method: { exact: 'GET' } },
    req: request({ 'x-dev': 'dev-a' }, '/api/x'),
    expected: true,
  },
  {
    name: 'all: one condition fails',
    filter: { headers: { 'x-dev': { exact: 'dev-a' } }, uri: { prefix: '/api' } },
    req: request({ 'x-dev': 'dev-a' }, '/web'),
    expected: false,
  },
];

describe('compileFilter', () => {
  for (const { name, filter, req, expected } of cases) {
    test(name, () => assert.equal(compileFilter(filter).matches(req), expected));
    test(`${name} (raw header list)`, () =>
      assert.equal(compileFilter(filter).matches(asFieldList(req)), expected));
  }

  test('a raw header list: names in any case, repeated fields joined in order with ","', () => {
    const matcher = compileFilter({ headers: { 'x-dev': { exact: 'dev-a,dev-b' } } });
    const listed = (...fields: string[]) => matcher.matches({ method: 'GET', path: '/', headers: fields });
    assert.equal(listed('Host', 'h', 'X-Dev', 'dev-a', 'accept', '*/*', 'x-DEV', 'dev-b'), true);
    assert.equal(listed('x-dev', 'dev-b', 'x-dev', 'dev-a'), false);
    assert.equal(listed('x-dev', 'dev-a'), false);
    assert.equal(listed('x-devs', 'dev-a,dev-b'), false);
  });

  test('regex matching stays linear on a catastrophic-backtracking pattern', { timeout: 2000 }, () => {
    // (a+)+$ takes exponential time in a backtracking engine; RE2 answers in one pass.
    const matcher = compileFilter({ headers: { 'x-dev': { regex: '(a+)+$' } } });
    assert.equal(matcher.matches(request({ 'x-dev': `${'a'.repeat(100_000)}!` })), false);
    assert.equal(matcher.matches(request({ 'x-dev': 'a'.repeat(100_000) })), true);
  });

  test('exposes the filter it was compiled from', () => {
    const filter: RouteFilter = { headers: { 'x-dev': { exact: 'dev-a' } } };
    assert.equal(compileFilter(filter).filter, filter);
  });
});
