/**
 * GitOps ownership: an object that Argo CD or Flux reconciles from git would have detour's route
 * reverted (or flagged as drift) within minutes, so detour does not edit it and routes with an
 * EnvoyFilter instead.
 */
import type { KubeObject } from './k8s-object.ts';

export interface GitOpsOwner {
  tool: 'argocd' | 'flux';
  /** The label or annotation that gave it away, e.g. `label app.kubernetes.io/instance=orders`. */
  evidence: string;
}

const ARGO_PREFIX = 'argocd.argoproj.io/';
const FLUX_PREFIXES = ['kustomize.toolkit.fluxcd.io/', 'helm.toolkit.fluxcd.io/'];

export function gitOpsOwner(object: KubeObject): GitOpsOwner | undefined {
  const labels = object.metadata.labels ?? {};
  const annotations = object.metadata.annotations ?? {};
  for (const [where, map] of [
    ['annotation', annotations],
    ['label', labels],
  ] as const) {
    for (const [key, value] of Object.entries(map).sort()) {
      if (key.startsWith(ARGO_PREFIX)) return { tool: 'argocd', evidence: `${where} ${key}=${value}` };
    }
    for (const [key, value] of Object.entries(map).sort()) {
      if (FLUX_PREFIXES.some((p) => key.startsWith(p)))
        return { tool: 'flux', evidence: `${where} ${key}=${value}` };
    }
  }
  // Argo CD's default tracking label. Helm charts set it too, and Argo CD rendering a chart also
  // leaves `managed-by: Helm`, so the two cannot be told apart: err on the safe side (an
  // EnvoyFilter works either way; an edit reverted by Argo CD does not).
  const instance = labels['app.kubernetes.io/instance'];
  if (instance !== undefined)
    return { tool: 'argocd', evidence: `label app.kubernetes.io/instance=${instance}` };
  return undefined;
}
