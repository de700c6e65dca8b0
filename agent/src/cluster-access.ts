import { kubeClient } from '@detour/mesh-adapters';
import { KubeConfig } from '@kubernetes/client-node';
import type { ResolvedAgentConfig } from './agent-config.ts';
import { leaseTokenAuthenticator } from './auth/lease-tokens.ts';
import { AgentJanitor } from './janitor/agent-janitor.ts';
import type { Log } from './log.ts';
import type { SessionRegistry } from './session-registry.ts';

/**
 * The agent's use of the apiserver, in its own namespace: session Leases admit CLIs, and the
 * janitor reverts sessions whose CLI vanished. In a pod the credentials are the ServiceAccount's;
 * elsewhere KUBECONFIG's.
 */
export function connectCluster(
  namespace: string,
  janitorSettings: ResolvedAgentConfig['janitor'],
  registry: SessionRegistry,
  log: Log,
): { authenticate: (token: string) => Promise<boolean>; janitor: AgentJanitor | undefined } {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const client = kubeClient(kc, { fieldManager: 'detour-agent' });
  let janitor: AgentJanitor | undefined;
  if (janitorSettings) {
    janitor = new AgentJanitor({
      client,
      namespace,
      ...janitorSettings,
      log,
      isLive: (id) => registry.has(id),
    });
    janitor.start();
    log.info('janitor.started', { namespace, ...janitorSettings });
  }
  return { authenticate: leaseTokenAuthenticator(client, namespace), janitor };
}
