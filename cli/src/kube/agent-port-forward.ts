import type { Duplex } from 'node:stream';
import { DetourError } from '@detour/router/errors';
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { openPortForward } from './port-forward-stream.ts';

/** The agent's tunnel port inside its pod (bound to the pod's loopback, reachable only this way). */
export const agentTunnelPort = 7700;

export interface AgentPortForward {
  /** Where the tunnel goes, for messages and `detour status`. */
  address: string;
  /** One port-forward stream to the tunnel port of a ready pod behind the agent's Service. */
  dial(): Promise<Duplex>;
  /** Why the last port-forward failed, in words a user can act on. */
  lastError(): DetourError | undefined;
  close(): Promise<void>;
}

function explain(error: unknown, namespace: string, service: string): DetourError {
  const text = String((error as Error)?.message ?? error);
  if (/403|forbidden/i.test(text)) {
    return new DetourError(
      'DETOUR_PORT_FORWARD_FORBIDDEN',
      `the apiserver refused the port-forward to the agent (${text}): your role needs get and create on pods/portforward in ${namespace} (manifests/rbac)`,
    );
  }
  return new DetourError(
    'DETOUR_PORT_FORWARD',
    `could not port-forward to a ready pod of Service ${namespace}/${service} (${text}): check \`kubectl get pods -n ${namespace} -l app.kubernetes.io/name=detour-agent\``,
  );
}

function servable(pod: V1Pod): boolean {
  return (
    pod.metadata?.deletionTimestamp === undefined &&
    (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

/**
 * A ready pod behind the Service, chosen at random (sessions spread over the agent's replicas),
 * never one being deleted: a pod still Ready while it shuts down would take the reconnect of the
 * very sessions it just dropped.
 */
async function pickAgentPod(core: CoreV1Api, namespace: string, service: string): Promise<string> {
  const selector = (await core.readNamespacedService({ name: service, namespace })).spec?.selector ?? {};
  const labelSelector = Object.entries(selector)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
  if (labelSelector === '') throw new Error(`Service ${namespace}/${service} has no selector`);
  const pods = (await core.listNamespacedPod({ namespace, labelSelector })).items.filter(servable);
  const pod = pods[Math.floor(Math.random() * pods.length)];
  if (!pod?.metadata?.name) throw new Error(`no ready pod selected by ${labelSelector}`);
  return pod.metadata.name;
}

/**
 * The tunnel's transport in cluster mode: each dial is one WebSocket port-forward, through the
 * apiserver and the kubelet, straight to the tunnel port of a ready pod behind the agent's Service
 * (carried as a stream: no loopback listener in between). The pod is looked up per dial, so a
 * reconnect after the agent pod was replaced (or deleted) reaches another.
 */
export async function forwardToAgent(
  kc: KubeConfig,
  namespace: string,
  service: string,
): Promise<AgentPortForward> {
  const core = kc.makeApiClient(CoreV1Api);
  const open = new Set<Duplex>();
  let lastError: DetourError | undefined;
  return {
    address: `port-forward to ${namespace}/${service}:${agentTunnelPort}`,
    lastError: () => lastError,
    async dial() {
      try {
        const stream = await openPortForward(
          kc,
          namespace,
          await pickAgentPod(core, namespace, service),
          agentTunnelPort,
        );
        open.add(stream);
        stream.once('close', () => open.delete(stream));
        return stream;
      } catch (error) {
        lastError = explain(error, namespace, service);
        throw lastError;
      }
    },
    close: async () => {
      for (const stream of open) stream.destroy();
    },
  };
}
