import { DetourError } from '@detour/router/errors';
import { KubeConfig } from '@kubernetes/client-node';

/** The user's kubeconfig as kubectl would read it ($KUBECONFIG, then ~/.kube/config, then in-cluster). */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromDefault();
  } catch (error) {
    throw unreadable(error as NodeJS.ErrnoException);
  }
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

/** Why the kubeconfig could not be read, naming the file and what to do. */
function unreadable(error: NodeJS.ErrnoException): DetourError {
  const file = error.path ?? process.env.KUBECONFIG ?? '~/.kube/config';
  if (error.code === 'ENOENT')
    return new DetourError(
      'DETOUR_NO_KUBECONFIG',
      `the kubeconfig ${file} does not exist: point KUBECONFIG at your kubeconfig (as for kubectl), or pass --agent HOST:PORT to use an agent directly`,
    );
  return new DetourError(
    'DETOUR_BAD_KUBECONFIG',
    `the kubeconfig ${file} could not be read: ${error.message.split('\n')[0]}; check it with \`kubectl config view\``,
  );
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
