import { InvalidInputError } from '@detour/router/errors';
import { ApiException, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

/**
 * Refuses a namespace the cluster does not have (a typo in `-n`), naming the ones it has, before
 * anything is looked up or created there: otherwise it shows as "no Deployment orders there" or
 * "install the agent", which sends the developer the wrong way. An identity that may not read
 * namespaces (a RoleBinding in one namespace only) is not stopped: the lookups that follow say
 * what is missing.
 */
export async function requireNamespace(kc: KubeConfig, namespace: string): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  try {
    await core.readNamespace({ name: namespace });
    return;
  } catch (error) {
    if (!(error instanceof ApiException) || error.code !== 404) return;
  }
  const names = await core
    .listNamespace()
    .then((list) => list.items.map((item) => item.metadata?.name ?? '').filter(Boolean))
    .catch(() => undefined);
  const context = kc.getCurrentContext();
  throw new InvalidInputError(
    'DETOUR_NO_NAMESPACE',
    `namespace ${namespace} does not exist in context ${context}${names ? ` (it has ${names.join(', ')})` : ''}: check -n / --namespace, or the kubeconfig's context`,
  );
}
