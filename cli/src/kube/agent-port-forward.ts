import net from 'node:net';
import { DetourError } from '@detour/router/errors';
import { CoreV1Api, type KubeConfig, PortForward, type V1Pod } from '@kubernetes/client-node';

/** The agent's tunnel port inside its pod (bound to the pod's loopback, reachable only this way). */
export const agentTunnelPort = 7700;

export interface AgentPortForward {
  /** `127.0.0.1:<port>`: dial it to reach the agent's tunnel port through the apiserver. */
  address: string;
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
 * A loopback listener whose every connection is port-forwarded, through the apiserver and the
 * kubelet, to the tunnel port of a ready pod behind the agent's Service. The pod is looked up per
 * connection, so a reconnect after the agent pod was replaced (or deleted) reaches another.
 */
export async function forwardToAgent(
  kc: KubeConfig,
  namespace: string,
  service: string,
): Promise<AgentPortForward> {
  const forward = new PortForward(kc, true);
  const core = kc.makeApiClient(CoreV1Api);
  const sockets = new Set<net.Socket>();
  let lastError: DetourError | undefined;
  // No Nagle: the tunnel's frames cross this socket as they come off the WebSocket; a held-back
  // small write waiting for a delayed ACK costs ~40 ms a request.
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    pickAgentPod(core, namespace, service)
      .then((pod) => forward.portForward(namespace, pod, [agentTunnelPort], socket, null, socket))
      .then((ws) => {
        const current = typeof ws === 'function' ? ws() : ws;
        socket.once('close', () => current?.close());
      })
      .catch((error: unknown) => {
        lastError = explain(error, namespace, service);
        socket.destroy();
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) =>
      reject(
        new DetourError(
          'DETOUR_PORT_FORWARD',
          `could not open a local port for the port-forward: ${error.message}`,
        ),
      ),
    );
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    lastError: () => lastError,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
