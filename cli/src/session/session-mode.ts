import { InvalidInputError } from '@detour/router/errors';
import {
  BAGGAGE_HEADER,
  baggageMatch,
  filterFromExpressions,
  methodMatch,
  parseBaggageMember,
  parseHeaderExpression,
  parsePathExpression,
  type RouteFilter,
  validateFilter,
} from '@detour/router/match/index';
import type { SessionOptions } from '../options.ts';

/** Methods a route-live probe may use: an empty POST reaching the real pods before the route is live could change something. */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

interface ModeBase {
  /** Headers added to outbound calls made outside any request (`--carry-header`). */
  carried: Record<string, string>;
}

/** A session that takes requests: those its filter matches (every one for steal-all). */
export interface RoutedMode extends ModeBase {
  kind: 'steal' | 'steal-all' | 'mirror';
  filter: RouteFilter;
  /** Values that satisfy the filter's regexes (the `--baggage` member, a method), for the route-live probe. */
  probeExamples: Record<string, string>;
}

/** A session that takes no requests: its process's env, files, DNS and calls only. */
export interface EgressOnlyMode extends ModeBase {
  kind: 'egress-only';
  filter?: undefined;
}

/** What a session takes from the cluster and what it adds to its process's calls, from the options. */
export type SessionMode = RoutedMode | EgressOnlyMode;

/** Options that route requests to the session: each one contradicts --egress-only. */
const routingFlags = {
  header: '--header',
  withoutHeader: '--without-header',
  stealAll: '--steal-all',
  mirror: '--mirror',
  path: '--path',
  method: '--method',
  baggage: '--baggage',
  port: '--port',
} as const satisfies Partial<Record<keyof SessionOptions, string>>;

function given(value: unknown): boolean {
  return Array.isArray(value) ? value.length > 0 : value !== undefined && value !== false;
}

function conflictError(flags: string[]): InvalidInputError {
  return new InvalidInputError(
    'DETOUR_CONFLICTING_FLAGS',
    `--egress-only takes no requests, so it cannot be combined with ${flags.join(', ')} (${flags.length > 1 ? 'they route' : 'it routes'} requests to this machine): drop ${flags.join(' and ')} to only send your calls out through the cluster, or drop --egress-only to receive requests`,
  );
}

function routeFilter(options: SessionOptions): {
  filter: RouteFilter;
  probeExamples: Record<string, string>;
} {
  const expressions = [
    ...options.header.map((expr) => parseHeaderExpression(expr)),
    ...options.withoutHeader.map((expr) => parseHeaderExpression(expr, { negate: true })),
  ];
  const filter = filterFromExpressions(expressions);
  const probeExamples: Record<string, string> = {};
  if (options.baggage !== undefined) {
    if (filter.headers?.[BAGGAGE_HEADER]) {
      throw new InvalidInputError(
        'DETOUR_CONFLICTING_FLAGS',
        `--baggage ${options.baggage} and --header ${BAGGAGE_HEADER}... both match the baggage header: keep one (--baggage for a member, --header baggage~=REGEX for anything else)`,
      );
    }
    const member = parseBaggageMember(options.baggage);
    filter.headers = { ...filter.headers, [BAGGAGE_HEADER]: baggageMatch(member) };
    probeExamples[BAGGAGE_HEADER] = `${member.key}=${member.value}`;
  }
  if (options.path !== undefined) filter.uri = parsePathExpression(options.path);
  const method = methodMatch(options.method);
  if (method) {
    filter.method = method;
    const methods = options.method.map((name) => name.trim().toUpperCase());
    probeExamples[':method'] = methods.find((name) => SAFE_METHODS.has(name)) ?? (methods[0] as string);
  }
  const conditions = Object.keys(filter).length > 0;
  if (!conditions && !options.stealAll) {
    throw new InvalidInputError(
      'DETOUR_NO_FILTER',
      'no filter given: pass --header x-dev=<your-name> to receive only your requests, --steal-all to take every request of the target, or --egress-only to take none (your process runs with the target’s env and its calls leave from the cluster)',
    );
  }
  return { filter: validateFilter(filter, 'filter', { allowMatchAll: options.stealAll }), probeExamples };
}

/** `--carry-header name=value` as given, or a bare name with the exact value the filter requires. */
function carriedHeaders(options: SessionOptions, filter: RouteFilter | undefined): Record<string, string> {
  const carried: Record<string, string> = {};
  for (const expr of options.carryHeader) {
    const { name, match } = parseHeaderExpression(expr);
    if ('exact' in match) carried[name] = match.exact;
    else if (Object.keys(match).length > 0)
      throw new InvalidInputError(
        'DETOUR_BAD_OPTION',
        `--carry-header ${expr}: a carried header is sent, so it needs a value: write name=value, e.g. --carry-header x-dev=me`,
      );
    else {
      const required = filter?.headers?.[name];
      if (!required || !('exact' in required))
        throw new InvalidInputError(
          'DETOUR_BAD_OPTION',
          options.egressOnly
            ? `--carry-header ${name}: with --egress-only there is no --header to take the value from; give it: --carry-header ${name}=VALUE (e.g. ${name}=<your feature environment>)`
            : `--carry-header ${name}: --header gives ${name} no exact value to carry; write --carry-header ${name}=VALUE, or --header ${name}=VALUE`,
        );
      carried[name] = required.exact;
    }
  }
  return carried;
}

/**
 * Decides the session's mode from the options: egress-only (and nothing that routes requests with
 * it), or a filter (refusing none unless --steal-all says so), plus the headers it carries.
 */
export function sessionModeFromOptions(options: SessionOptions): SessionMode {
  if (options.egressOnly) {
    const conflicts = Object.entries(routingFlags).flatMap(([key, flag]) =>
      given(options[key as keyof typeof routingFlags]) ? [flag] : [],
    );
    if (conflicts.length > 0) throw conflictError(conflicts);
    return { kind: 'egress-only', carried: carriedHeaders(options, undefined) };
  }
  const { filter, probeExamples } = routeFilter(options);
  return {
    kind: options.stealAll ? 'steal-all' : options.mirror ? 'mirror' : 'steal',
    filter,
    carried: carriedHeaders(options, filter),
    probeExamples,
  };
}
