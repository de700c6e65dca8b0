/**
 * @detour/mesh-adapters: a session's routing intent → mesh config, and back.
 * Pure planners here; the applier (reads, preconditioned writes, retries) builds on them.
 */
import type { MeshAdapter, MeshKind } from './adapter.ts';
import { createGatewayApiAdapter } from './gateway-api/adapter.ts';
import { createIstioEnvoyFilterAdapter, type IstioEnvoyFilterOptions } from './istio-envoyfilter/adapter.ts';
import {
  createIstioVirtualServiceAdapter,
  type IstioVirtualServiceOptions,
} from './istio-virtualservice/adapter.ts';
import { createServiceAdapter } from './service/adapter.ts';

export type { ListQuery, MeshAdapter, MeshKind, ObservedObjects } from './adapter.ts';
export {
  ApplyGaveUpError,
  type ApplyOptions,
  type ApplyResult,
  applySession,
  applyWrite,
  type ClusterClient,
  janitorQueries,
  namespacedClient,
  observe,
  reconcile,
  revertSession,
  runJanitor,
} from './applier.ts';
export * from './canonical.ts';
export * from './detect.ts';
export * from './errors.ts';
export * from './feature-env.ts';
export { InMemoryCluster, simulate, WriteConflictError } from './in-memory-cluster.ts';
export * from './janitor-plan.ts';
export * from './k8s-object.ts';
export {
  KubeApiError,
  type KubeClientOptions,
  kubeClient,
  RESOURCES,
  type ResourceAttributes,
} from './kube-client.ts';
export * from './lease.ts';
export { memoryClient } from './memory-client.ts';
export { type AccessReviewer, preflight, requiredPermissions } from './permissions.ts';
export * from './plan.ts';
export * from './session-intent.ts';
export {
  createGatewayApiAdapter,
  createIstioEnvoyFilterAdapter,
  createIstioVirtualServiceAdapter,
  createServiceAdapter,
};

export interface AdapterOptions {
  istio?: IstioVirtualServiceOptions;
  envoyFilter?: IstioEnvoyFilterOptions;
}

export function adapterFor(kind: MeshKind, options: AdapterOptions = {}): MeshAdapter {
  switch (kind) {
    case 'istio':
      return createIstioVirtualServiceAdapter(options.istio);
    case 'istio-envoyfilter':
      return createIstioEnvoyFilterAdapter(options.envoyFilter);
    case 'gateway-api':
      return createGatewayApiAdapter();
    case 'service':
      return createServiceAdapter();
  }
}

/** Every adapter: what the janitor reverts with (a session's marks say nothing of which adapter placed them). */
export function allAdapters(options: AdapterOptions = {}): MeshAdapter[] {
  return (['istio', 'istio-envoyfilter', 'gateway-api', 'service'] as const).map((k) =>
    adapterFor(k, options),
  );
}
