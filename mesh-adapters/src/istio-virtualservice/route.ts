/**
 * The route a session adds to a VirtualService. The filter is a subset of Istio's HTTPMatchRequest
 * by design, so it is copied in unchanged; detour adds the port (so a session on :8080 never takes
 * :9090) and, where the object serves several hosts, the authority (so it never takes the others).
 */
import { FEATURE_RESPONSE_HEADER, featureResponseValue } from '../feature-env.ts';
import { authorityRegex } from '../hosts.ts';
import type { RouteFilter, SessionIntent } from '../session-intent.ts';
import { routeName, sessionFilter } from '../session-intent.ts';
import type {
  Destination,
  HTTPMatchRequest,
  HTTPMirrorPolicy,
  HTTPRoute,
  VirtualServiceSpec,
} from './types.ts';

export function filterToMatch(filter: RouteFilter | undefined): HTTPMatchRequest {
  const match: HTTPMatchRequest = {};
  if (filter === undefined) return match;
  if (filter.headers && Object.keys(filter.headers).length > 0)
    match.headers = structuredClone(filter.headers);
  if (filter.withoutHeaders && Object.keys(filter.withoutHeaders).length > 0) {
    match.withoutHeaders = structuredClone(filter.withoutHeaders);
  }
  if (filter.uri !== undefined) match.uri = structuredClone(filter.uri);
  if (filter.method !== undefined) match.method = structuredClone(filter.method);
  return match;
}

export function agentDestination(intent: SessionIntent): Destination {
  return {
    host: `${intent.agent.name}.${intent.agent.namespace}.svc.${clusterDomainOf(intent.target.host)}`,
    port: { number: intent.agent.port },
  };
}

function clusterDomainOf(fqdn: string): string {
  return fqdn.split('.').slice(3).join('.');
}

/**
 * The matches of the session route for a VirtualService with `spec` (undefined: one detour creates).
 * A VirtualService bound to gateways and to `mesh` gets two matches: one for sidecars (with the
 * port, which is the Service port there) and one for its gateways (without it: at a gateway the
 * port is the gateway's listener port), so a developer reaching the service through the ingress
 * with the header is routed too.
 */
export function sessionMatches(
  intent: SessionIntent,
  spec: VirtualServiceSpec | undefined,
): HTTPMatchRequest[] {
  const base = filterToMatch(sessionFilter(intent.mode));
  const meshMatch: HTTPMatchRequest = { ...structuredClone(base), port: intent.target.port };
  if ((spec?.hosts?.length ?? 1) > 1) {
    meshMatch.authority = { regex: authorityRegex(intent.target.host, intent.target.port) };
  }
  const gateways = spec?.gateways ?? [];
  const otherGateways = gateways.filter((g) => g !== 'mesh');
  if (otherGateways.length === 0) return [meshMatch];
  return [
    { ...meshMatch, gateways: ['mesh'] },
    { ...structuredClone(base), gateways: otherGateways },
  ];
}

/** Where requests go now when nothing more specific matches: the route a mirror copies. */
export function defaultRouteFor(http: readonly HTTPRoute[], port: number): HTTPRoute | undefined {
  return http.find(
    (route) =>
      !route.name?.startsWith('detour-') &&
      (route.match === undefined ||
        route.match.length === 0 ||
        route.match.some((m) =>
          Object.keys(m).every((k) => (k === 'port' ? m.port === port : k === 'name')),
        )),
  );
}

export function buildSessionRoute(
  intent: SessionIntent,
  spec: VirtualServiceSpec | undefined,
  defaultRoute: HTTPRoute | undefined,
): HTTPRoute {
  const name = routeName(intent.sessionId);
  const match = sessionMatches(intent, spec);
  const mode = intent.mode;
  switch (mode.kind) {
    case 'steal':
    case 'steal-all':
      return { name, match, route: [{ destination: agentDestination(intent) }] };
    case 'feature-env':
      // The response header names the environment and the pod that answered (Envoy fills in
      // %UPSTREAM_REMOTE_ADDRESS%): how `detour feature up` proves a request reached the workload.
      return {
        name,
        match,
        route: [{ destination: { host: intent.target.host, subset: mode.subset.name } }],
        headers: {
          response: { set: { [FEATURE_RESPONSE_HEADER]: featureResponseValue(mode.subset.name) } },
        },
      };
    case 'mirror': {
      // A copy of the default route (its destinations, retries, timeouts, rewrites, header
      // operations) so the matched requests are served exactly as before, plus a mirror to the agent.
      const base: HTTPRoute = defaultRoute
        ? structuredClone(defaultRoute)
        : { route: [{ destination: { host: intent.target.host } }] };
      delete base.name;
      delete base.match;
      const mirrors: HTTPMirrorPolicy[] = structuredClone(base.mirrors ?? []);
      if (base.mirror !== undefined) {
        // Istio accepts either `mirror` or `mirrors`: fold the legacy field into the list.
        const legacy: HTTPMirrorPolicy = { destination: base.mirror };
        if (base.mirrorPercentage !== undefined) legacy.percentage = base.mirrorPercentage;
        mirrors.unshift(legacy);
      }
      delete base.mirror;
      delete base.mirrorPercentage;
      delete base.mirror_percent;
      const ours: HTTPMirrorPolicy = { destination: agentDestination(intent) };
      if (mode.percent !== undefined) ours.percentage = { value: mode.percent };
      mirrors.push(ours);
      return { name, match, ...base, mirrors };
    }
  }
}
