import type { RouteFilter, StringMatch } from './filter.ts';
import { compileRegex } from './validate-filter.ts';

/**
 * Canonical JSON of a filter (keys sorted, header names lower-cased, empty header maps dropped):
 * two filters that are written differently but mean the same get the same key, so the session
 * registry can index sessions by host, port and key.
 */
export function filterKey(filter: RouteFilter): string {
  const normalised: RouteFilter = {};
  for (const side of ['headers', 'withoutHeaders'] as const) {
    const map = filter[side];
    if (map && Object.keys(map).length > 0) normalised[side] = lowerCaseNames(map);
  }
  if (filter.uri) normalised.uri = filter.uri;
  if (filter.method) normalised.method = filter.method;
  return JSON.stringify(sortKeys(normalised));
}

/**
 * Whether one request could match both filters, i.e. whether two sessions on the same host and port
 * would fight over it. Conservative: true unless a shared field proves them disjoint, for instance
 * different exact values of one header, or one requiring a header the other requires absent. Filters on
 * different headers overlap (a request may carry both), and so do two regexes, which cannot be compared.
 */
export function filtersOverlap(a: RouteFilter, b: RouteFilter): boolean {
  return filterKey(a) === filterKey(b) || !(disjointBy(a, b) || disjointBy(b, a));
}

/** Proves disjointness from a's point of view; called both ways for the asymmetric checks. */
function disjointBy(a: RouteFilter, b: RouteFilter): boolean {
  if (a.uri && b.uri && valuesDisjoint(a.uri, b.uri)) return true;
  if (a.method && b.method && valuesDisjoint(a.method, b.method)) return true;
  const bHeaders = lowerCaseNames(b.headers ?? {});
  const bWithout = lowerCaseNames(b.withoutHeaders ?? {});
  for (const [name, match] of Object.entries(lowerCaseNames(a.headers ?? {}))) {
    const other = bHeaders[name];
    if (other && valuesDisjoint(match, other)) return true;
    const excluded = bWithout[name];
    if (excluded && excludes(excluded, match)) return true;
  }
  return false;
}

/** No value satisfies both matches (both require the header present). */
function valuesDisjoint(x: StringMatch, y: StringMatch): boolean {
  if ('exact' in x) return !accepts(y, x.exact);
  if ('exact' in y) return !accepts(x, y.exact);
  if ('prefix' in x && 'prefix' in y) return !x.prefix.startsWith(y.prefix) && !y.prefix.startsWith(x.prefix);
  return false;
}

/** Every request satisfying `required` is rejected by the withoutHeaders entry `excluded`. */
function excludes(excluded: StringMatch, required: StringMatch): boolean {
  if (!('exact' in excluded || 'prefix' in excluded || 'regex' in excluded)) return true; // must be absent
  if ('exact' in required) return accepts(excluded, required.exact);
  if ('prefix' in required && 'prefix' in excluded) return required.prefix.startsWith(excluded.prefix);
  return false;
}

function accepts(match: StringMatch, value: string): boolean {
  if ('exact' in match) return match.exact === value;
  if ('prefix' in match) return value.startsWith(match.prefix);
  if ('regex' in match) return compileRegex(match.regex).testExact(value);
  return true;
}

function lowerCaseNames(map: Record<string, StringMatch>): Record<string, StringMatch> {
  return Object.fromEntries(Object.entries(map).map(([name, match]) => [name.toLowerCase(), match]));
}

function sortKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sortKeys(v)]));
}
