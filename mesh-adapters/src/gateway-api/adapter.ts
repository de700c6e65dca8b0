/**
 * `--mesh gateway-api` (GAMMA): an HTTPRoute of the session's own whose parentRef is the target
 * Service and port, with one rule whose backend is the agent Service.
 *
 * Gateway API does not order rules by position but by specificity across all routes attached to a
 * parent (exact path, then longest prefix, then method, then number of header matches). A single
 * `header: x-dev` rule would therefore lose to an existing `PathPrefix /api` rule. So the session
 * rule copies every match of the routes already attached to the Service and adds the session's
 * headers to each copy: for every existing match, ours is strictly more specific.
 */
import type { ListQuery, MeshAdapter, ObservedObjects } from '../adapter.ts';
import { inNamespace, QUERIES } from '../adapter.ts';
import { canonicalJson } from '../canonical.ts';
import { UnsupportedByAdapterError } from '../errors.ts';
import { parseServiceHost } from '../hosts.ts';
import type { KubeObject } from '../k8s-object.ts';
import { compareByAge, isKind } from '../k8s-object.ts';
import type { Plan } from '../plan.ts';
import { emptyPlan, pushWrite, writeFor } from '../plan.ts';
import type { RouteFilter, SessionIntent, StringMatch } from '../session-intent.ts';
import { routeName, sessionFilter, validateIntent } from '../session-intent.ts';
import {
  addOwner,
  isManagedByDetour,
  LEASE_ANNOTATION,
  leaseKey,
  leaseOwnerReference,
  managedLabels,
  SESSION_LABEL,
} from '../session-records.ts';

export interface HTTPHeaderMatch {
  type?: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface HTTPPathMatch {
  type?: 'Exact' | 'PathPrefix' | 'RegularExpression';
  value?: string;
}

export interface HTTPRouteMatch {
  path?: HTTPPathMatch;
  headers?: HTTPHeaderMatch[];
  queryParams?: unknown[];
  method?: string;
  [field: string]: unknown;
}

export interface BackendRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  weight?: number;
}

export interface HTTPRouteRule {
  name?: string;
  matches?: HTTPRouteMatch[];
  backendRefs?: BackendRef[];
  filters?: unknown[];
  [field: string]: unknown;
}

export interface ParentRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  [field: string]: unknown;
}

export interface HTTPRouteSpec {
  parentRefs?: ParentRef[];
  hostnames?: string[];
  rules?: HTTPRouteRule[];
  [field: string]: unknown;
}

export type GatewayHTTPRoute = KubeObject<HTTPRouteSpec>;

export const HTTPROUTE_API_VERSION = 'gateway.networking.k8s.io/v1';
export const REFERENCEGRANT_API_VERSION = 'gateway.networking.k8s.io/v1beta1';

export function createGatewayApiAdapter(): MeshAdapter {
  return {
    kind: 'gateway-api',
    queries(intent: SessionIntent): ListQuery[] {
      const queries: ListQuery[] = [inNamespace(QUERIES.httpRoutes)];
      if (intent.agent.namespace !== intent.target.namespace) {
        queries.push(inNamespace(QUERIES.referenceGrants, intent.agent.namespace));
      }
      return queries;
    },
    revertQueries: () => [inNamespace(QUERIES.httpRoutes), inNamespace(QUERIES.referenceGrants)],
    plan: planGatewayApi,
    planRevert: planGatewayApiRevert,
  };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const ADAPTER = 'gateway-api';

/** Istio StringMatch → Gateway API header match (which has only Exact and RE2 RegularExpression). */
function headerMatch(name: string, match: StringMatch): HTTPHeaderMatch {
  if ('exact' in match) return { type: 'Exact', name, value: match.exact };
  if ('prefix' in match) return { type: 'RegularExpression', name, value: `${escapeRegex(match.prefix)}.*` };
  if ('regex' in match) return { type: 'RegularExpression', name, value: match.regex };
  // `{}`: header present, whatever its value.
  return { type: 'RegularExpression', name, value: '.*' };
}

/** The session filter as one Gateway API match; throws for what Gateway API cannot express. */
export function filterToGatewayMatch(filter: RouteFilter | undefined): HTTPRouteMatch {
  const match: HTTPRouteMatch = {};
  if (filter === undefined) return { path: { type: 'PathPrefix', value: '/' } };
  if (filter.withoutHeaders && Object.keys(filter.withoutHeaders).length > 0) {
    throw new UnsupportedByAdapterError(
      ADAPTER,
      'filter.withoutHeaders',
      'Gateway API matches cannot require a header to be absent',
      'Drop withoutHeaders, or use --mesh istio / istio-envoyfilter.',
    );
  }
  const headers = Object.entries(filter.headers ?? {}).map(([n, m]) => headerMatch(n, m));
  if (headers.length > 0) match.headers = headers;
  const uri = filter.uri;
  if (uri !== undefined) {
    // Istio's prefix is a string prefix; Gateway API's PathPrefix is per path segment, so only
    // `/` is the same in both; anything else becomes the equivalent RE2 expression.
    if ('exact' in uri) match.path = { type: 'Exact', value: uri.exact };
    else if ('prefix' in uri)
      match.path =
        uri.prefix === '/'
          ? { type: 'PathPrefix', value: '/' }
          : { type: 'RegularExpression', value: `${escapeRegex(uri.prefix)}.*` };
    else if ('regex' in uri) match.path = { type: 'RegularExpression', value: uri.regex };
  } else {
    match.path = { type: 'PathPrefix', value: '/' };
  }
  const method = filter.method;
  if (method !== undefined) {
    if (!('exact' in method)) {
      throw new UnsupportedByAdapterError(
        ADAPTER,
        'filter.method',
        'Gateway API matches a method only exactly',
        'Give method as {exact: "GET"}, or use --mesh istio.',
      );
    }
    match.method = method.exact;
  }
  return match;
}

/** `a ∧ b` as one Gateway API match, or undefined when they cannot both hold (two paths, two methods). */
function conjoin(a: HTTPRouteMatch, b: HTTPRouteMatch): HTTPRouteMatch | undefined {
  const out: HTTPRouteMatch = structuredClone(a);
  // PathPrefix "/" (what the apiserver defaults a match without path to) constrains nothing.
  const isRoot = (p: HTTPPathMatch | undefined) =>
    p === undefined || canonicalJson(p) === canonicalJson(ROOT.path);
  if (!isRoot(b.path)) {
    if (!isRoot(out.path) && canonicalJson(out.path) !== canonicalJson(b.path)) return undefined;
    out.path = structuredClone(b.path);
  }
  if (b.method !== undefined) {
    if (out.method !== undefined && out.method !== b.method) return undefined;
    out.method = b.method;
  }
  const headers = [...(out.headers ?? [])];
  for (const h of b.headers ?? []) {
    const same = headers.find((x) => x.name.toLowerCase() === h.name.toLowerCase());
    if (same !== undefined) {
      if (canonicalJson(same) !== canonicalJson(h)) return undefined;
      continue;
    }
    headers.push(structuredClone(h));
  }
  if (headers.length > 0) out.headers = headers;
  return out;
}

const ROOT: HTTPRouteMatch = { path: { type: 'PathPrefix', value: '/' } };

function uniqueMatches(matches: Array<HTTPRouteMatch | undefined>): HTTPRouteMatch[] {
  const seen = new Set<string>();
  const out: HTTPRouteMatch[] = [];
  for (const m of matches) {
    if (m === undefined) continue;
    const key = canonicalJson(m);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(m);
  }
  return out;
}

function attachesTo(route: GatewayHTTPRoute, intent: SessionIntent): boolean {
  const { service } = parseServiceHost(intent.target.host);
  return (route.spec?.parentRefs ?? []).some(
    (p) =>
      p.kind === 'Service' &&
      (p.group ?? '') === '' &&
      p.name === service &&
      (p.namespace ?? route.metadata.namespace) === intent.target.namespace &&
      (p.port === undefined || p.port === intent.target.port),
  );
}

function httpRoutesOf(observed: ObservedObjects): GatewayHTTPRoute[] {
  return observed.filter((o) => isKind(o, 'gateway.networking.k8s.io', 'HTTPRoute')) as GatewayHTTPRoute[];
}

export function planGatewayApi(observed: ObservedObjects, intent: SessionIntent): Plan {
  intent = validateIntent(intent);
  const plan = emptyPlan();
  const mode = intent.mode;
  if (mode.kind === 'feature-env') {
    throw new UnsupportedByAdapterError(
      ADAPTER,
      'mode',
      'feature environments route to DestinationRule subsets, which Gateway API has no equivalent of',
      'Use --mesh istio, or route to the environment with a Service of its own.',
    );
  }
  const { service } = parseServiceHost(intent.target.host);
  const name = routeName(intent.sessionId);
  const ours = filterToGatewayMatch(sessionFilter(mode));
  const attached = httpRoutesOf(observed)
    .filter((r) => !isManagedByDetour(r) && attachesTo(r, intent))
    .sort(compareByAge);
  // Fields the apiserver would default are written out, so the object read back equals the one
  // planned and a re-plan is empty (else every reconcile would rewrite it).
  const mirrorRef: BackendRef = {
    group: '',
    kind: 'Service',
    name: intent.agent.name,
    port: intent.agent.port,
  };
  if (intent.agent.namespace !== intent.target.namespace) mirrorRef.namespace = intent.agent.namespace;
  const agentRef: BackendRef = { ...mirrorRef, weight: 1 };
  const targetRef: BackendRef = {
    group: '',
    kind: 'Service',
    name: service,
    port: intent.target.port,
    weight: 1,
  };
  const catchAll: HTTPRouteMatch =
    Object.keys(ours).length > 0 ? ours : { path: { type: 'PathPrefix', value: '/' } };
  const rules: HTTPRouteRule[] = [];
  if (mode.kind === 'mirror') {
    // Each existing rule, restricted to the filter, keeps its own backends and filters and adds a
    // mirror to the agent: matched requests are served exactly as before.
    const mirror = {
      type: 'RequestMirror',
      requestMirror: {
        backendRef: mirrorRef,
        ...(mode.percent !== undefined ? { percent: Math.round(mode.percent) } : {}),
      },
    };
    for (const route of attached) {
      for (const rule of route.spec?.rules ?? []) {
        const matches = uniqueMatches((rule.matches ?? [ROOT]).map((m) => conjoin(m, ours)));
        if (matches.length === 0) continue;
        const copy = structuredClone(rule);
        delete copy.name;
        rules.push({ ...copy, matches, filters: [...(copy.filters ?? []), mirror] });
      }
    }
    rules.push({ matches: [catchAll], backendRefs: [targetRef], filters: [mirror] });
  } else {
    const copied = attached.flatMap((r) =>
      (r.spec?.rules ?? []).flatMap((rule) => (rule.matches ?? [ROOT]).map((m) => conjoin(m, ours))),
    );
    rules.push({ matches: uniqueMatches([...copied, catchAll]), backendRefs: [agentRef] });
    // Once any HTTPRoute attaches to a Service, requests no rule matches get a 404 (GAMMA): with no
    // route of its own there, the Service's other traffic needs a rule that sends it where it went.
    if (attached.length === 0 && mode.kind === 'steal') {
      rules.push({ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [targetRef] });
    }
  }
  if (mode.kind === 'steal-all' && attached.length > 0) {
    plan.warnings.push(
      `steal-all with Gateway API: rules of ${attached.map((r) => r.metadata.name).join(', ')} that match on headers ` +
        "or query parameters are as specific as detour's and may keep some requests.",
    );
  }
  const matchCount = rules.reduce((n, r) => n + (r.matches?.length ?? 0), 0);
  const labels = managedLabels(intent.sessionId);
  const annotations = { [LEASE_ANNOTATION]: leaseKey(intent.lease), 'detour.dev/holder': intent.holder };
  const desired: GatewayHTTPRoute = {
    apiVersion: HTTPROUTE_API_VERSION,
    kind: 'HTTPRoute',
    metadata: { name, namespace: intent.target.namespace, labels, annotations },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: service, port: intent.target.port }],
      rules,
    },
  };
  addOwner(desired, leaseOwnerReference(intent.lease, intent.target.namespace));
  if (intent.agent.namespace !== intent.target.namespace) {
    // A backend in another namespace is only allowed through a ReferenceGrant in that namespace.
    const grant: KubeObject = {
      apiVersion: REFERENCEGRANT_API_VERSION,
      kind: 'ReferenceGrant',
      metadata: {
        name,
        namespace: intent.agent.namespace,
        labels: { ...labels },
        annotations: { ...annotations },
      },
      spec: {
        from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: intent.target.namespace }],
        to: [{ group: '', kind: 'Service', name: intent.agent.name }],
      },
    };
    addOwner(grant, leaseOwnerReference(intent.lease, intent.agent.namespace));
    const existingGrant = observed.find(
      (o) =>
        isKind(o, 'gateway.networking.k8s.io', 'ReferenceGrant') &&
        o.metadata.name === name &&
        o.metadata.namespace === intent.agent.namespace,
    );
    pushWrite(
      plan,
      writeFor(
        existingGrant,
        grant,
        `let HTTPRoute ${name} send to agent Service in ${intent.agent.namespace}`,
      ),
    );
  }
  const existing = httpRoutesOf(observed).find(
    (r) => r.metadata.name === name && r.metadata.namespace === intent.target.namespace,
  );
  if (existing?.metadata.ownerReferences)
    for (const o of existing.metadata.ownerReferences) addOwner(desired, o);
  pushWrite(
    plan,
    writeFor(
      existing,
      desired,
      `HTTPRoute ${name} on Service ${service}:${intent.target.port} (${matchCount} matches)`,
    ),
  );
  return plan;
}

export function planGatewayApiRevert(observed: ObservedObjects, sessionId: string): Plan {
  const plan = emptyPlan();
  const mine = (o: KubeObject) => isManagedByDetour(o) && o.metadata.labels?.[SESSION_LABEL] === sessionId;
  // Route first, then the grant it used.
  for (const route of httpRoutesOf(observed).filter(mine)) {
    pushWrite(plan, writeFor(route, undefined, `session ${sessionId} ends: its HTTPRoute goes`));
  }
  for (const grant of observed.filter(
    (o) => isKind(o, 'gateway.networking.k8s.io', 'ReferenceGrant') && mine(o),
  )) {
    pushWrite(plan, writeFor(grant, undefined, `session ${sessionId} ends: its ReferenceGrant goes`));
  }
  return plan;
}
