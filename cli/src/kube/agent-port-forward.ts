import type { Duplex } from 'node:stream';
import { DetourError } from '@detour/router/errors';
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { openPortForward } from './port-forward-stream.ts';

/** The agent's tunnel port inside its pod (bound to the pod's loopback, reachable only this way). */
export const agentTunnelPort = 7700;

export interface AgentPortForward {
  /** Where the tunnel goes, for messages and `detour status`. */
  address: string;
  /** The ready pods behind the agent's Service, by name (none being deleted). */
  readyPods(): Promise<string[]>;
  /** One port-forward stream to the tunnel port of `pod`, or of a ready pod picked at random. */
  dial(pod?: string): Promise<Duplex>;
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

/** The Service's selector as a label selector (read once per session: it picks the agent's pods). */
async function selectorOf(core: CoreV1Api, namespace: string, service: string): Promise<string> {
  const selector = (await core.readNamespacedService({ name: service, namespace })).spec?.selector ?? {};
  const labelSelector = Object.entries(selector)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
  if (labelSelector === '') throw new Error(`Service ${namespace}/${service} has no selector`);
  return labelSelector;
}

/**
 * The ready pods `labelSelector` picks, never one being deleted: a pod still Ready while it shuts
 * down would take the reconnect of the very sessions it just dropped.
 */
async function readyAgentPods(core: CoreV1Api, namespace: string, labelSelector: string): Promise<string[]> {
  const pods = (await core.listNamespacedPod({ namespace, labelSelector })).items.filter(servable);
  const names = pods.flatMap((pod) => (pod.metadata?.name ? [pod.metadata.name] : []));
  if (names.length === 0) throw new Error(`no ready pod selected by ${labelSelector}`);
  return names;
}

/**
 * The tunnel's transport in cluster mode: each dial is one WebSocket port-forward, through the
 * apiserver and the kubelet, straight to the tunnel port of a ready pod behind the agent's Service
 * (carried as a stream: no loopback listener in between). Without a pod named, a ready one is
 * looked up per dial (sessions spread over the replicas), so a reconnect reaches a live one.
 */
export async function forwardToAgent(
  kc: KubeConfig,
  namespace: string,
  service: string,
): Promise<AgentPortForward> {
  const core = kc.makeApiClient(CoreV1Api);
  const open = new Set<Duplex>();
  let lastError: DetourError | undefined;
  const failed = (error: unknown) => {
    lastError = explain(error, namespace, service);
    return lastError;
  };
  let selector: Promise<string> | undefined;
  const readyPods = async () => {
    try {
      selector ??= selectorOf(core, namespace, service).catch((error) => {
        selector = undefined;
        throw error;
      });
      return await readyAgentPods(core, namespace, await selector);
    } catch (error) {
      throw failed(error);
    }
  };
  return {
    address: `port-forward to ${namespace}/${service}:${agentTunnelPort}`,
    lastError: () => lastError,
    readyPods,
    async dial(pod) {
      try {
        const pods = pod ? [pod] : await readyPods();
        const chosen = pods[Math.floor(Math.random() * pods.length)] as string;
        const stream = await openPortForward(kc, namespace, chosen, agentTunnelPort);
        open.add(stream);
        stream.once('close', () => open.delete(stream));
        return stream;
      } catch (error) {
        throw error instanceof DetourError ? error : failed(error);
      }
    },
    close: async () => {
      for (const stream of open) stream.destroy();
    },
  };
}
