import { kubeClient } from '@detour/mesh-adapters';
import { KubeConfig } from '@kubernetes/client-node';
import type { ResolvedAgentConfig } from './agent-config.ts';
import { leaseTokenAuthenticator } from './auth/lease-tokens.ts';
import { AgentJanitor } from './janitor/agent-janitor.ts';
import type { Log } from './log.ts';
import { type LeasePeers, watchLeasePeers } from './peers/lease-peers.ts';
import type { SessionRegistry } from './session-registry.ts';

/**
 * The agent's use of the apiserver, in its own namespace: session Leases admit CLIs, the janitor
 * reverts sessions whose CLI vanished, and (with a peer address) replicas learn which of them holds
 * which session. In a pod the credentials are the ServiceAccount's; elsewhere KUBECONFIG's.
 */
export async function connectCluster(
  namespace: string,
  config: Pick<ResolvedAgentConfig, 'janitor' | 'agentName' | 'peerAddress'>,
  registry: SessionRegistry,
  log: Log,
): Promise<{
  authenticate: (token: string) => Promise<boolean>;
  janitor: AgentJanitor | undefined;
  peers: LeasePeers | undefined;
}> {
  const janitorSettings = config.janitor;
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
      self: config.agentName,
    });
    janitor.start();
    log.info('janitor.started', { namespace, ...janitorSettings });
  }
  const peers = config.peerAddress
    ? await watchLeasePeers({
        kc,
        client,
        namespace,
        pod: config.agentName,
        address: config.peerAddress,
        log,
        isLive: (id) => registry.has(id),
      })
    : undefined;
  return { authenticate: leaseTokenAuthenticator(client, namespace), janitor, peers };
}
