/**
 * Loopback ports of the local cluster, chosen away from a real cluster's defaults.
 * DETOUR_CLUSTER_PORT_OFFSET shifts them all, so a second cluster (its own DETOUR_CLUSTER_DIR) can
 * run beside the first.
 */
const offset = Number.parseInt(process.env.DETOUR_CLUSTER_PORT_OFFSET ?? '0', 10) || 0;

export const ports = {
  etcdClient: 23790 + offset,
  etcdPeer: 23800 + offset,
  apiserver: 16443 + offset,
  controllerManager: 10257 + offset,
  scheduler: 10259 + offset,
  /** kubelet inside the node namespace, and its forwarder on the host's loopback */
  kubelet: 20250 + offset,
  kubeletHealthz: 20248 + offset,
  kubeProxyHealthz: 10256 + offset,
  kubeProxyMetrics: 10249 + offset,
} as const;
