import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidInputError } from '../../src/errors.ts';
import { InvalidFilterError, validateFilter } from '../../src/match/index.ts';

/** Asserts validateFilter rejects `filter` with DETOUR_INVALID_FILTER and a message matching every pattern. */
function rejects(filter: unknown, ...patterns: RegExp[]): void {
  assert.throws(
    () => validateFilter(filter),
    (error: unknown) => {
      assert.ok(error instanceof InvalidFilterError);
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, 'DETOUR_INVALID_FILTER');
      for (const pattern of patterns) assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('validateFilter', () => {
  test('accepts every StringMatch form and returns a normalised copy', () => {
    const input = {
      headers: {
        'X-Dev': { exact: 'dev-a' },
        'x-team': { prefix: 'pay' },
        'x-user': { regex: 'u[0-9]+' },
        'x-on': {},
      },
      withoutHeaders: { 'X-Debug': {} },
      uri: { prefix: '/api/' },
      method: { exact: 'GET' },
    };
    assert.deepEqual(validateFilter(input), {
      headers: {
        'x-dev': { exact: 'dev-a' },
        'x-team': { prefix: 'pay' },
        'x-user': { regex: 'u[0-9]+' },
        'x-on': {},
      },
      withoutHeaders: { 'x-debug': {} },
      uri: { prefix: '/api/' },
      method: { exact: 'GET' },
    });
  });

  test('rejects a filter without conditions unless match-all is allowed', () => {
    rejects({}, /no conditions/, /every request/);
    rejects({ headers: {} }, /no conditions/);
    assert.deepEqual(validateFilter({}, 'session x', { allowMatchAll: true }), {});
  });

  test('names where the filter came from', () => {
    assert.throws(
      () => validateFilter({}, 'session dev-a'),
      /^InvalidFilterError: Invalid filter in session dev-a: /,
    );
  });

  test('shape errors name the field path', () => {
    rejects(null, /\(filter\)/);
    rejects({ headers: { 'x-dev': { exact: 1 } } }, /headers\["x-dev"\]\.exact/);
    rejects({ headers: { 'x-dev': { contains: 'a' } } }, /headers\["x-dev"\]/, /contains/);
    rejects({ header: { 'x-dev': {} } }, /header/);
    rejects({ headers: { 'x-dev': null } }, /headers\["x-dev"\]/);
  });

  test('a match has exactly one of exact, prefix, regex', () => {
    rejects(
      { headers: { 'x-dev': { exact: 'a', prefix: 'a' } } },
      /headers\["x-dev"\]: has exact and prefix/,
      /exactly one/,
    );
  });

  test('header names must be RFC 9110 tokens', () => {
    rejects({ headers: { 'x dev': {} } }, /headers\["x dev"\]/, /not a valid header name/);
    rejects({ headers: { '': {} } }, /not a valid header name/);
    rejects({ headers: { ':path': { exact: '/' } } }, /pseudo-header/, /uri or method/);
    rejects({ headers: { Host: { exact: 'a' } } }, /:authority/);
  });

  test('names differing only in case are one header', () => {
    rejects({ headers: { 'X-Dev': { exact: 'a' }, 'x-dev': { exact: 'b' } } }, /"x-dev" is listed twice/);
  });

  test('follows Istio on empty values and the uri', () => {
    rejects(
      { headers: { 'x-dev': { prefix: '' } } },
      /headers\["x-dev"\]\.prefix: "" is not allowed/,
      /use \{\}/,
    );
    rejects({ method: { regex: '' } }, /method\.regex: an empty regex/);
    rejects({ uri: {} }, /uri: \{\} only means "present" for headers/);
    rejects({ uri: { exact: 'api' } }, /uri\.exact: "api" never matches/, /start with "\/"/);
    rejects({ uri: { prefix: '/api?v=1' } }, /query and fragment removed/);
    rejects({ headers: { 'x-dev': { regex: 'a'.repeat(1025) } } }, /at most 1024/);
  });

  test('lists every problem at once', () => {
    rejects(
      { headers: { 'x dev': {}, 'x-a': { prefix: '' } } },
      /\n {2}- headers\["x dev"\]/,
      /\n {2}- headers\["x-a"\]\.prefix/,
    );
  });

  describe('regexes must be RE2', () => {
    const cases = [
      { regex: '(a)\\1', problem: /invalid escape sequence: `\\1`/, fix: /no backreferences/ },
      { regex: '(?=x)x', problem: /unsupported Perl syntax: `\(\?=`/, fix: /no lookahead or lookbehind/ },
      { regex: '(?!x).', problem: /`\(\?!`/, fix: /no lookahead/ },
      { regex: '(?<=x)y', problem: /`\(\?<=x\)y`/, fix: /no lookahead or lookbehind/ },
      { regex: '*', problem: /missing argument to repetition operator/, fix: /not a glob/ },
      { regex: 'a++', problem: /invalid nested repetition operator/, fix: /re2\/wiki\/Syntax/ },
      { regex: '[z-a]', problem: /invalid character class range/, fix: /re2\/wiki\/Syntax/ },
    ];
    for (const { regex, problem, fix } of cases) {
      test(`rejects ${regex}`, () => {
        const quoted = JSON.stringify(regex).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        rejects(
          { headers: { 'x-dev': { regex } } },
          /headers\["x-dev"\]\.regex: /,
          new RegExp(quoted),
          problem,
          fix,
        );
      });
    }
    test('in withoutHeaders, uri and method too', () => {
      rejects({ withoutHeaders: { 'x-dev': { regex: '(a)\\1' } } }, /withoutHeaders\["x-dev"\]\.regex/);
      rejects({ uri: { regex: '(?=/)' } }, /uri\.regex/);
      rejects({ method: { regex: '(?!GET)' } }, /method\.regex/);
    });
    test('accepts RE2 features', () => {
      for (const regex of ['(?i)dev-a', '(?P<n>a)b', '\\pL+', '\\Qa.b\\E', 'dev-[a-z]{1,8}']) {
        validateFilter({ headers: { 'x-dev': { regex } } });
      }
    });
  });
});
