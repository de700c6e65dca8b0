import { DetourError } from '@detour/router/errors';
import { KubeConfig } from '@kubernetes/client-node';

/** The user's kubeconfig as kubectl would read it ($KUBECONFIG, then ~/.kube/config, then in-cluster). */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const cluster = kc.getCurrentCluster();
  // Without any kubeconfig, client-node falls back to http://localhost:8080: say what is missing instead.
  if (
    !cluster ||
    (kc.getCurrentContext() === 'loaded-context' && cluster.server === 'http://localhost:8080')
  ) {
    throw new DetourError(
      'DETOUR_NO_KUBECONFIG',
      'no Kubernetes context: set KUBECONFIG or ~/.kube/config (as for kubectl), or pass --agent HOST:PORT to use an agent directly',
    );
  }
  return kc;
}

/**
 * The namespace of the kubeconfig's current context, as kubectl defaults to it; undefined when the
 * context names none or there is no kubeconfig (callers fall back to `default`).
 */
export function contextNamespace(): string | undefined {
  try {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return kc.getContextObject(kc.getCurrentContext())?.namespace || undefined;
  } catch {
    return undefined;
  }
}
