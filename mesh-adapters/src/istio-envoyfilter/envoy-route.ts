/**
 * The Envoy route that an EnvoyFilter `HTTP_ROUTE` `INSERT_FIRST` patch inserts.
 *
 * Envoy's data-plane API types: no package that ships them is installed here. The well-kept one is
 * `@grpc/grpc-js-xds`, whose `generated/envoy/config/route/v3/*` are generated from Envoy's protos;
 * until it is added, this is a minimal subset with exactly its field names (proto names, which is
 * what Istio's JSON-to-proto decoding of a patch value accepts), for the fields detour writes.
 * Durations and other well-known types are not used, so the JSON form equals the proto form.
 */
import type { RouteFilter, StringMatch } from '../session-intent.ts';

/** envoy.type.matcher.v3.RegexMatcher (google_re2 is the default engine). */
export interface RegexMatcher {
  regex: string;
}

/** envoy.type.matcher.v3.StringMatcher, the fields detour uses. */
export type StringMatcher = { exact: string } | { prefix: string } | { safe_regex: RegexMatcher };

/** envoy.config.route.v3.HeaderMatcher, the fields detour uses. */
export interface HeaderMatcher {
  name: string;
  string_match?: StringMatcher;
  present_match?: boolean;
  invert_match?: boolean;
}

/** envoy.config.route.v3.RouteMatch: exactly one of prefix, path, safe_regex. */
export type RouteMatch = ({ prefix: string } | { path: string } | { safe_regex: RegexMatcher }) & {
  headers?: HeaderMatcher[];
};

/** envoy.config.route.v3.RouteAction.RequestMirrorPolicy */
export interface RequestMirrorPolicy {
  cluster: string;
  runtime_fraction?: { default_value: { numerator: number; denominator: 'HUNDRED' } };
}

/** envoy.config.route.v3.RouteAction, the fields detour uses. */
export interface RouteAction {
  cluster: string;
  request_mirror_policies?: RequestMirrorPolicy[];
}

/** envoy.config.core.v3.HeaderValueOption, the fields detour uses. */
export interface HeaderValueOption {
  header: { key: string; value: string };
  append_action: 'OVERWRITE_IF_EXISTS_OR_ADD';
}

/** envoy.config.route.v3.Route, the fields detour uses. */
export interface Route {
  name: string;
  match: RouteMatch;
  route: RouteAction;
  response_headers_to_add?: HeaderValueOption[];
}

function toStringMatcher(match: StringMatch): StringMatcher | undefined {
  if ('exact' in match) return { exact: match.exact };
  if ('prefix' in match) return { prefix: match.prefix };
  if ('regex' in match) return { safe_regex: { regex: match.regex } };
  return undefined;
}

/**
 * The same filter as Envoy sees it. Istio's `{}` (header present) is `present_match: true`;
 * withoutHeaders is the inverted matcher (`{}`: `present_match: false`, i.e. absent); the
 * method is the `:method` pseudo-header.
 */
export function filterToRouteMatch(filter: RouteFilter | undefined): RouteMatch {
  const headers: HeaderMatcher[] = [];
  for (const [name, match] of Object.entries(filter?.headers ?? {})) {
    const sm = toStringMatcher(match);
    headers.push(sm ? { name, string_match: sm } : { name, present_match: true });
  }
  for (const [name, match] of Object.entries(filter?.withoutHeaders ?? {})) {
    const sm = toStringMatcher(match);
    headers.push(sm ? { name, string_match: sm, invert_match: true } : { name, present_match: false });
  }
  if (filter?.method !== undefined) {
    const sm = toStringMatcher(filter.method);
    if (sm) headers.push({ name: ':method', string_match: sm });
  }
  const uri = filter?.uri;
  let path: RouteMatch;
  if (uri !== undefined && 'exact' in uri) path = { path: uri.exact };
  else if (uri !== undefined && 'prefix' in uri) path = { prefix: uri.prefix };
  else if (uri !== undefined && 'regex' in uri) path = { safe_regex: { regex: uri.regex } };
  else path = { prefix: '/' };
  return headers.length > 0 ? { ...path, headers } : path;
}

/** Istio's outbound cluster name: `outbound|<port>|<subset>|<host>`. */
export function outboundCluster(host: string, port: number, subset = ''): string {
  return `outbound|${port}|${subset}|${host}`;
}
