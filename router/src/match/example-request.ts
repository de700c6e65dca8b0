import { compileFilter, type MatchableRequest } from './compile-filter.ts';
import type { RouteFilter, StringMatch } from './filter.ts';

export interface ExampleRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

/** A value that satisfies `match`: regexes only through `example`, which must satisfy them. */
function valueFor(match: StringMatch, example: string | undefined): string | undefined {
  if ('exact' in match) return match.exact;
  if ('prefix' in match) return match.prefix;
  if ('regex' in match) return example;
  return 'detour-probe';
}

/**
 * A request that `filter` matches, for the route-live probe: exact and prefix values as they are,
 * presence as a placeholder, regexes from `examples` (header name → a value known to match, e.g.
 * the member a `--baggage` regex was built from). The result is checked with the same matcher the
 * agent runs, so a probe never claims a route live for a request the route would not take; when
 * no such request can be built (a path regex, say) the answer is undefined.
 */
export function exampleRequest(
  filter: RouteFilter,
  examples: Readonly<Record<string, string>> = {},
): ExampleRequest | undefined {
  const headers: Record<string, string> = {};
  for (const [name, match] of Object.entries(filter.headers ?? {})) {
    const value = valueFor(match, examples[name]);
    if (value === undefined) return undefined;
    headers[name] = value;
  }
  const method = filter.method ? valueFor(filter.method, examples[':method']) : 'HEAD';
  const path = filter.uri ? valueFor(filter.uri, examples[':path']) : '/';
  if (method === undefined || path === undefined) return undefined;
  // The probe goes out as a URL: a path the URL parser would rewrite is not the path matched.
  if (new URL(path, 'http://probe').pathname !== path) return undefined;
  const request: ExampleRequest = { method, path, headers };
  const matchable: MatchableRequest = request;
  return compileFilter(filter).matches(matchable) ? request : undefined;
}
