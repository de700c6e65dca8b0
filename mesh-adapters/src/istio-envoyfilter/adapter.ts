/**
 * `--mesh istio-envoyfilter`: the session's route as an EnvoyFilter of its own, patching the
 * sidecars' outbound route configuration (`HTTP_ROUTE`, `INSERT_FIRST` in the virtual host of the
 * target host and port). It never touches a VirtualService, so it is what detour uses when
 * VirtualServices are owned by GitOps. Revert is deleting the object (uid precondition).
 *
 * The EnvoyFilter lives in Istio's root namespace by default, so it applies to callers in every
 * namespace; in the target's namespace it would only apply to callers there.
 */
import type { ListQuery, MeshAdapter, ObservedObjects } from '../adapter.ts';
import { inNamespace, QUERIES } from '../adapter.ts';
import { UneditableObjectError } from '../errors.ts';
import { FEATURE_RESPONSE_HEADER, featureResponseValue } from '../feature-env.ts';
import { planSubset, planSubsetRevert } from '../istio-virtualservice/destination-rule.ts';
import { agentDestination } from '../istio-virtualservice/route.ts';
import type { KubeObject } from '../k8s-object.ts';
import { isKind, refOf } from '../k8s-object.ts';
import type { Plan } from '../plan.ts';
import { emptyPlan, pushWrite, writeFor } from '../plan.ts';
import type { SessionIntent } from '../session-intent.ts';
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
import type { RequestMirrorPolicy, Route } from './envoy-route.ts';
import { filterToRouteMatch, outboundCluster } from './envoy-route.ts';

export interface IstioEnvoyFilterOptions {
  /** Where EnvoyFilters go: Istio's root namespace (default `istio-system`) applies mesh-wide. */
  namespace?: string;
}

export interface EnvoyFilterSpec {
  workloadSelector?: unknown;
  configPatches: Array<{
    applyTo: 'HTTP_ROUTE';
    match: {
      context: 'SIDECAR_OUTBOUND';
      routeConfiguration: { portNumber: number; vhost: { name: string } };
    };
    patch: { operation: 'INSERT_FIRST'; value: Route };
  }>;
}

export type EnvoyFilter = KubeObject<EnvoyFilterSpec>;

export const ENVOYFILTER_API_VERSION = 'networking.istio.io/v1alpha3';

export function createIstioEnvoyFilterAdapter(options: IstioEnvoyFilterOptions = {}): MeshAdapter {
  const namespace = options.namespace ?? 'istio-system';
  return {
    kind: 'istio-envoyfilter',
    queries(intent: SessionIntent): ListQuery[] {
      const queries: ListQuery[] = [inNamespace(QUERIES.envoyFilters, namespace)];
      if (intent.mode.kind === 'feature-env') queries.push(inNamespace(QUERIES.destinationRules));
      return queries;
    },
    revertQueries: () => [inNamespace(QUERIES.envoyFilters), inNamespace(QUERIES.destinationRules)],
    plan: (observed, intent) => planEnvoyFilter(observed, intent, namespace),
    planRevert: planEnvoyFilterRevert,
  };
}

export function sessionEnvoyRoute(intent: SessionIntent): Route {
  const { host, port } = intent.target;
  const agent = agentDestination(intent);
  const agentCluster = outboundCluster(agent.host, intent.agent.port);
  const match = filterToRouteMatch(sessionFilter(intent.mode));
  const name = routeName(intent.sessionId);
  const mode = intent.mode;
  switch (mode.kind) {
    case 'steal':
    case 'steal-all':
      return { name, match, route: { cluster: agentCluster } };
    case 'feature-env':
      return {
        name,
        match,
        route: { cluster: outboundCluster(host, port, mode.subset.name) },
        response_headers_to_add: [
          {
            header: { key: FEATURE_RESPONSE_HEADER, value: featureResponseValue(mode.subset.name) },
            append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
          },
        ],
      };
    case 'mirror': {
      const mirror: RequestMirrorPolicy = { cluster: agentCluster };
      if (mode.percent !== undefined) {
        mirror.runtime_fraction = { default_value: { numerator: mode.percent, denominator: 'HUNDRED' } };
      }
      return {
        name,
        match,
        route: { cluster: outboundCluster(host, port), request_mirror_policies: [mirror] },
      };
    }
  }
}

export function planEnvoyFilter(observed: ObservedObjects, intent: SessionIntent, namespace: string): Plan {
  intent = validateIntent(intent);
  const plan = emptyPlan();
  pushWrite(plan, planSubset(observed, intent, 'config-propagated'));
  const name = routeName(intent.sessionId);
  const { host, port } = intent.target;
  const desired: EnvoyFilter = {
    apiVersion: ENVOYFILTER_API_VERSION,
    kind: 'EnvoyFilter',
    metadata: {
      name,
      namespace,
      labels: managedLabels(intent.sessionId),
      annotations: { [LEASE_ANNOTATION]: leaseKey(intent.lease), 'detour.dev/holder': intent.holder },
    },
    spec: {
      configPatches: [
        {
          applyTo: 'HTTP_ROUTE',
          match: {
            context: 'SIDECAR_OUTBOUND',
            routeConfiguration: { portNumber: port, vhost: { name: `${host}:${port}` } },
          },
          patch: { operation: 'INSERT_FIRST', value: sessionEnvoyRoute(intent) },
        },
      ],
    },
  };
  addOwner(desired, leaseOwnerReference(intent.lease, namespace));
  const existing = envoyFiltersOf(observed).find(
    (ef) => ef.metadata.name === name && (ef.metadata.namespace ?? '') === namespace,
  );
  if (existing !== undefined && !isManagedByDetour(existing)) {
    throw new UneditableObjectError(
      refOf(existing),
      'metadata.name',
      `an EnvoyFilter named ${name} exists and was not created by detour`,
      'start the session with another id, or remove that EnvoyFilter',
    );
  }
  if (existing !== undefined && existing.metadata.labels?.[SESSION_LABEL] !== intent.sessionId) {
    throw new UneditableObjectError(
      refOf(existing),
      `metadata.labels[${SESSION_LABEL}]`,
      `EnvoyFilter ${name} belongs to session ${existing.metadata.labels?.[SESSION_LABEL]}`,
      'start the session with another id',
    );
  }
  // Keep ownerReferences that exist (the Lease of this session) on a re-plan.
  if (existing?.metadata.ownerReferences) {
    for (const o of existing.metadata.ownerReferences) addOwner(desired, o);
  }
  pushWrite(
    plan,
    writeFor(existing, desired, `route ${name} first in the sidecars' outbound routes for ${host}:${port}`),
  );
  return plan;
}

function envoyFiltersOf(observed: ObservedObjects): EnvoyFilter[] {
  return observed.filter((o) => isKind(o, 'networking.istio.io', 'EnvoyFilter')) as EnvoyFilter[];
}

export function planEnvoyFilterRevert(observed: ObservedObjects, sessionId: string): Plan {
  const plan = emptyPlan();
  for (const ef of envoyFiltersOf(observed)) {
    if (!isManagedByDetour(ef) || ef.metadata.labels?.[SESSION_LABEL] !== sessionId) continue;
    pushWrite(plan, writeFor(ef, undefined, `session ${sessionId} ends: its EnvoyFilter goes`));
  }
  const subsetWrites = planSubsetRevert(observed, sessionId);
  if (subsetWrites.length > 0) {
    for (const write of plan.writes) write.barrier = 'config-propagated';
    plan.writes.push(...subsetWrites);
  }
  return plan;
}
