import type { RouteFilter, StringMatch } from './filter.ts';
import { compileRegex } from './validate-filter.ts';

/**
 * The parts of a request a filter looks at, as Node's http module delivers them: `path` is the
 * request-target (`req.url`) and every header value is a latin1 string (one char per byte).
 * `headers` is either the flat list Node delivers (`req.rawHeaders`, an HTTP/2 stream's raw
 * headers: name, value, name, value, ...; names in any case), which the matcher reads without
 * building a map, or a map with lower-case names (`req.headersDistinct`, not `req.headers`: Node
 * joins repeated headers with ", " while Envoy joins them with ",", and we must join as Envoy does).
 */
export interface MatchableRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined> | readonly string[];
}

export interface RequestMatcher {
  readonly filter: RouteFilter;
  matches(req: MatchableRequest): boolean;
}

type ValueTest = (value: string) => boolean;
interface HeaderTest {
  name: string;
  /** null: the `{}` match, i.e. only presence counts. */
  test: ValueTest | null;
}

// Node hands over header bytes as latin1 chars; Envoy matches the bytes, and RE2 reads them as UTF-8.
// ASCII (nearly every request) is identical either way, so only other values take the byte path.
const NON_ASCII = /[\u0080-\uffff]/;

/**
 * Evaluates a validated filter the way Envoy evaluates the route Istio generates from it, so the agent
 * and the mesh agree on which requests are the developer's. Regexes are compiled once, here; `matches`
 * allocates nothing for ASCII single-valued headers.
 */
export function compileFilter(filter: RouteFilter): RequestMatcher {
  const required = headerTests(filter.headers);
  const excluded = headerTests(filter.withoutHeaders);
  const method = filter.method ? valueTest(filter.method) : null;
  const uri = filter.uri ? uriTest(filter.uri) : null;
  return {
    filter,
    matches(req) {
      if (method && !method(req.method)) return false;
      if (uri && !uri(req.path)) return false;
      for (let i = 0; i < required.length; i++) {
        const { name, test } = required[i] as HeaderTest;
        const value = requestHeader(req, name);
        if (value === undefined || (test !== null && !test(value))) return false;
      }
      for (let i = 0; i < excluded.length; i++) {
        const { name, test } = excluded[i] as HeaderTest;
        const value = requestHeader(req, name);
        // Istio emits withoutHeaders as invert_match, plus treat_missing_header_as_empty for value
        // matches (pilot/pkg/networking/core/route/route.go, TranslateRouteMatch): `{}` means "absent",
        // and a value match is tested against "" when the header is missing.
        if (test === null ? value !== undefined : test(value ?? '')) return false;
      }
      return true;
    },
  };
}

function headerTests(map: Record<string, StringMatch> | undefined): HeaderTest[] {
  if (!map) return [];
  return Object.entries(map).map(([name, match]) => ({
    name: name.toLowerCase(),
    test: 'exact' in match || 'prefix' in match || 'regex' in match ? valueTest(match) : null,
  }));
}

/** Envoy's StringMatcher on a header value: exact/prefix compare bytes, regex is an RE2 full match. */
function valueTest(match: StringMatch): ValueTest {
  if ('regex' in match) {
    const re = compileRegex(match.regex);
    return (value) => re.testExact(NON_ASCII.test(value) ? Buffer.from(value, 'latin1') : value);
  }
  if ('exact' in match) {
    const exact = asLatin1Bytes(match.exact);
    return (value) => value === exact;
  }
  if ('prefix' in match) {
    const prefix = asLatin1Bytes(match.prefix);
    return (value) => value.startsWith(prefix);
  }
  return () => true;
}

/**
 * Envoy matches path, prefix and safe_regex routes against `:path` with the query and fragment removed
 * (PathMatcher::match calls PathUtil::removeQueryAndFragment, which cuts at the first '?' or '#';
 * source/common/common/matchers.cc and source/common/http/path_utility.cc). So `/api?x=1` matches
 * exact `/api`, and prefix `/api?x` never matches.
 */
function uriTest(match: StringMatch): ValueTest {
  if ('regex' in match) {
    const test = valueTest(match);
    return (path) => {
      const end = pathEnd(path);
      return test(end === path.length ? path : path.slice(0, end));
    };
  }
  if ('exact' in match) {
    const exact = asLatin1Bytes(match.exact);
    return (path) => pathEnd(path) === exact.length && path.startsWith(exact);
  }
  if ('prefix' in match) {
    const prefix = asLatin1Bytes(match.prefix);
    return (path) => path.startsWith(prefix) && prefix.length <= pathEnd(path);
  }
  return () => true;
}

function pathEnd(path: string): number {
  const query = path.indexOf('?');
  const fragment = path.indexOf('#');
  if (query < 0) return fragment < 0 ? path.length : fragment;
  return fragment < 0 ? query : Math.min(query, fragment);
}

/**
 * A request's header `name` (lower case) as Envoy matches it, HeaderUtility::getAllOfHeaderAsString
 * (source/common/http/header_utility.cc): repeated fields are joined with "," before matching; no
 * field at all means absent.
 */
export function requestHeader(req: MatchableRequest, name: string): string | undefined {
  const headers = req.headers;
  if (isFieldList(headers)) return listedValue(headers, name);
  const value = headers[name];
  if (value === undefined || typeof value === 'string') return value;
  if (value.length <= 1) return value[0];
  return value.join(',');
}

function isFieldList(headers: MatchableRequest['headers']): headers is readonly string[] {
  return Array.isArray(headers);
}

/** The value of `name` in a flat name/value list, repeated fields joined; no string built for a single one. */
function listedValue(fields: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    const field = fields[i] as string;
    if (field.length !== name.length || (field !== name && field.toLowerCase() !== name)) continue;
    value = value === undefined ? (fields[i + 1] as string) : `${value},${fields[i + 1]}`;
  }
  return value;
}

/** The configured value as Node would present the same bytes on the wire (UTF-8 bytes as latin1 chars). */
function asLatin1Bytes(value: string): string {
  return NON_ASCII.test(value) ? Buffer.from(value, 'utf8').toString('latin1') : value;
}
