/**
 * One interface, four adapters. Each is a pair of pure planners (observed objects + intent → plan)
 * plus the list of what the applier must read first. Planners never read the cluster and never
 * write; the applier lists `queries`, calls `plan`, applies the writes with their preconditions and,
 * on a conflict, lists again and re-plans (level-triggered: the plan depends only on what is there).
 */
import type { KubeObject } from './k8s-object.ts';
import type { Plan } from './plan.ts';
import type { SessionIntent } from './session-intent.ts';

export type MeshKind = 'istio' | 'istio-envoyfilter' | 'gateway-api' | 'service';

/** Everything the applier read for this plan: the objects of every kind in `queries`. */
export type ObservedObjects = readonly KubeObject[];

/** A list call the applier makes before planning (`namespace` undefined: all namespaces). */
export interface ListQuery {
  apiVersion: string;
  kind: string;
  /** The plural resource name, for RBAC preflight and for the REST path. */
  resource: string;
  namespace?: string;
}

export interface MeshAdapter {
  readonly kind: MeshKind;
  /** What to list before `plan` for this intent. */
  queries(intent: SessionIntent): ListQuery[];
  /** What to list before `planRevert` and the janitor (every namespace: routes can be anywhere). */
  revertQueries(): ListQuery[];
  /** The writes that put the session's route in place. Empty when it already is (idempotent). */
  plan(observed: ObservedObjects, intent: SessionIntent): Plan;
  /**
   * The writes that remove exactly what `sessionId` added, keeping whatever others changed
   * meanwhile. Needs no intent: everything it needs is recorded on the objects. Idempotent.
   */
  planRevert(observed: ObservedObjects, sessionId: string): Plan;
}

export const QUERIES = {
  virtualServices: {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    resource: 'virtualservices',
  },
  destinationRules: {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    resource: 'destinationrules',
  },
  envoyFilters: { apiVersion: 'networking.istio.io/v1alpha3', kind: 'EnvoyFilter', resource: 'envoyfilters' },
  httpRoutes: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', resource: 'httproutes' },
  referenceGrants: {
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
    kind: 'ReferenceGrant',
    resource: 'referencegrants',
  },
  services: { apiVersion: 'v1', kind: 'Service', resource: 'services' },
  leases: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', resource: 'leases' },
} as const satisfies Record<string, ListQuery>;

export function inNamespace(query: ListQuery, namespace?: string): ListQuery {
  return namespace === undefined ? { ...query } : { ...query, namespace };
}
