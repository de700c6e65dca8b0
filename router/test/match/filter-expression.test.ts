import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  compileFilter,
  filterFromExpressions,
  formatFilter,
  formatHeaderExpression,
  InvalidFilterError,
  parseHeaderExpression,
  validateFilter,
} from '../../src/match/index.ts';

describe('parseHeaderExpression', () => {
  const forms = [
    { expr: 'x-dev=dev-a', match: { exact: 'dev-a' } },
    { expr: 'x-dev^=dev-', match: { prefix: 'dev-' } },
    { expr: 'x-dev~=dev-[a-z]+', match: { regex: 'dev-[a-z]+' } },
    { expr: 'x-dev', match: {} },
    { expr: 'x-token=a=b', match: { exact: 'a=b' } },
    { expr: 'x-dev~=a|b=c', match: { regex: 'a|b=c' } },
  ];
  for (const { expr, match } of forms) {
    test(`${expr} parses and round-trips`, () => {
      const parsed = parseHeaderExpression(expr);
      assert.deepEqual(parsed, { name: expr.split(/[\^~]?=/)[0], match, negate: false });
      assert.equal(formatHeaderExpression(parsed.name, parsed.match), expr);
      assert.deepEqual(parseHeaderExpression(formatHeaderExpression(parsed.name, parsed.match)), parsed);
    });
  }

  test('negate marks --without-header expressions', () => {
    assert.deepEqual(parseHeaderExpression('x-debug', { negate: true }), {
      name: 'x-debug',
      match: {},
      negate: true,
    });
  });

  test('lower-cases the name', () => {
    assert.equal(parseHeaderExpression('X-Dev=Dev-A').name, 'x-dev');
    assert.deepEqual(parseHeaderExpression('X-Dev=Dev-A').match, { exact: 'Dev-A' });
  });

  const bad = [
    { expr: '', problem: /name is missing/ },
    { expr: '=dev-a', problem: /name is missing/ },
    { expr: '^=dev-a', problem: /name is missing/ },
    { expr: 'x-dev=', problem: /value is empty/ },
    { expr: 'x-dev~=', problem: /value is empty/ },
    { expr: 'x-dev!=dev-a', problem: /--without-header x-dev=dev-a/ },
    { expr: 'x-dev: dev-a', problem: /not name: value/ },
    { expr: 'x dev=a', problem: /not a valid header name/ },
    { expr: ':method=GET', problem: /pseudo-header/ },
    { expr: 'x-dev~=(a)\\1', problem: /no backreferences/ },
    { expr: 'x-dev~=(?=dev)', problem: /no lookahead/ },
  ];
  for (const { expr, problem } of bad) {
    test(`rejects ${JSON.stringify(expr)}`, () => {
      assert.throws(
        () => parseHeaderExpression(expr),
        (error: unknown) => {
          assert.ok(error instanceof InvalidFilterError);
          assert.equal(error.code, 'DETOUR_INVALID_FILTER');
          assert.ok(
            error.message.includes(`Invalid header expression ${JSON.stringify(expr)}: `),
            error.message,
          );
          assert.match(error.message, problem);
          assert.match(error.message, /accepted forms: name=value \(exact\), name\^=prefix, name~=regex/);
          return true;
        },
      );
    });
  }
});

describe('filterFromExpressions', () => {
  test('builds a filter that validates and matches', () => {
    const filter = filterFromExpressions([
      parseHeaderExpression('x-dev=dev-a'),
      parseHeaderExpression('x-debug', { negate: true }),
    ]);
    assert.deepEqual(filter, { headers: { 'x-dev': { exact: 'dev-a' } }, withoutHeaders: { 'x-debug': {} } });
    assert.deepEqual(validateFilter(filter), filter);
    const matcher = compileFilter(filter);
    assert.equal(matcher.matches({ method: 'GET', path: '/', headers: { 'x-dev': 'dev-a' } }), true);
    assert.equal(
      matcher.matches({ method: 'GET', path: '/', headers: { 'x-dev': 'dev-a', 'x-debug': '1' } }),
      false,
    );
  });

  test('rejects one header named twice on the same side', () => {
    assert.throws(
      () => filterFromExpressions([parseHeaderExpression('x-dev=a'), parseHeaderExpression('X-Dev^=b')]),
      /--header names "x-dev" twice \(x-dev=a and x-dev\^=b\)/,
    );
  });

  test('allows one header on both sides', () => {
    const filter = filterFromExpressions([
      parseHeaderExpression('x-dev^=dev-'),
      parseHeaderExpression('x-dev=dev-b', { negate: true }),
    ]);
    assert.deepEqual(filter, {
      headers: { 'x-dev': { prefix: 'dev-' } },
      withoutHeaders: { 'x-dev': { exact: 'dev-b' } },
    });
  });
});

describe('formatFilter', () => {
  test('one term per condition', () => {
    assert.equal(formatFilter({ headers: { 'x-dev': { exact: 'dev-a' } } }), 'x-dev=dev-a');
    assert.equal(
      formatFilter({
        headers: { 'x-dev': { exact: 'dev-a' }, 'x-user': {} },
        withoutHeaders: { 'x-debug': {}, 'x-env': { prefix: 'prod' } },
        uri: { prefix: '/api' },
        method: { regex: 'GET|HEAD' },
      }),
      'x-dev=dev-a x-user !x-debug !x-env^=prod :path^=/api :method~=GET|HEAD',
    );
  });

  test('quotes values that would break the line', () => {
    assert.equal(formatFilter({ headers: { 'x-dev': { exact: 'dev a' } } }), 'x-dev="dev a"');
  });

  test('says when a filter matches everything', () => {
    assert.equal(formatFilter({}), '(all requests)');
  });
});
