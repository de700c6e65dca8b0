import { stringify } from 'yaml';
import { istiodPorts, istioNamespace } from './settings.ts';

/**
 * How pods reach an istiod that runs on the host (tier 2 wiring). Injected sidecars dial
 * istiod.istio-system.svc:15012 (XDS and CA): a Service without selector whose EndpointSlice names an
 * address inside the node's network namespace where a relay forwards to istiod on the host's loopback
 * (the same Unix-socket relay pattern tier 2 uses for the apiserver). Port 443 is the webhook port,
 * listed for completeness: the apiserver itself calls the webhook by url on loopback.
 */
export function istiodServiceManifest(address: string): string {
  const ports = [
    { name: 'grpc-xds', port: istiodPorts.secureGrpc, targetPort: istiodPorts.secureGrpc },
    { name: 'https-webhook', port: 443, targetPort: istiodPorts.https },
  ];
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'istiod', namespace: istioNamespace, labels: { app: 'istiod', istio: 'pilot' } },
    spec: {
      ports: ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: 'TCP' })),
    },
  };
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'istiod-host',
      namespace: istioNamespace,
      labels: {
        'kubernetes.io/service-name': 'istiod',
        'endpointslice.kubernetes.io/managed-by': 'detour.local',
      },
    },
    addressType: 'IPv4',
    endpoints: [{ addresses: [address], conditions: { ready: true } }],
    ports: ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
  };
  return `${stringify(service)}---\n${stringify(slice)}`;
}
