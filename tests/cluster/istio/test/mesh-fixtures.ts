// The Istio objects and the request both tier-3 test files use: workloads registered as
// WorkloadEntries (sidecars run as host processes, not pods), sidecars without traffic capture, mTLS
// mode, and a curl from a workload's network namespace whose JSON answer names the echo app.
import type { Sidecar } from '../sidecar.ts';

export function yamlDocs(...docs: object[]): string {
  return docs.map((doc) => JSON.stringify(doc)).join('\n---\n');
}

export function workloadEntry(
  namespace: string,
  name: string,
  address: string,
  labels: Record<string, string>,
  serviceAccount: string,
) {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: { name, namespace },
    // tlsMode=istio is what auto-mTLS looks for on an endpoint (the injector puts it on pods): without
    // it clients send plain text, which STRICT refuses.
    spec: { address, labels: { ...labels, 'security.istio.io/tlsMode': 'istio' }, serviceAccount },
  };
}

export function peerAuthentication(namespace: string, mode: 'STRICT' | 'PERMISSIVE') {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name: 'default', namespace },
    spec: { mtls: { mode } },
  };
}

/** A Sidecar object for the workloads labelled app=<app>, without traffic capture (no iptables). */
function sidecar(namespace: string, app: string, spec: object) {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'Sidecar',
    metadata: { name: app, namespace },
    spec: { workloadSelector: { labels: { app } }, ...spec },
  };
}

const httpPort = (number: number) => ({ number, protocol: 'HTTP', name: 'http' });

/** The client app sends to its Envoy's egress listener on 127.0.0.1:<port>. */
export function clientSidecar(namespace: string, app: string, port: number) {
  return sidecar(namespace, app, {
    egress: [{ port: httpPort(port), bind: '127.0.0.1', captureMode: 'NONE', hosts: ['./*'] }],
  });
}

/** The server's Envoy listens on the workload address and forwards to the app on loopback. */
export function serverSidecar(namespace: string, app: string, port: number, appPort: number) {
  return sidecar(namespace, app, {
    ingress: [{ port: httpPort(port), defaultEndpoint: `127.0.0.1:${appPort}`, captureMode: 'NONE' }],
    egress: [{ hosts: ['./*'] }],
  });
}

export interface EchoAnswer {
  name: string;
  headers: Record<string, string>;
}

/** curl from the sidecar's network namespace; the echo app's JSON answer. Fails on an HTTP error. */
export async function curlEcho(
  from: Sidecar,
  url: string,
  options: { headers?: string[]; maxTimeSeconds?: number } = {},
): Promise<EchoAnswer> {
  const out = await from.exec([
    'curl',
    '-sS',
    '--fail-with-body',
    '--max-time',
    String(options.maxTimeSeconds ?? 5),
    ...(options.headers ?? []).flatMap((header) => ['-H', header]),
    url,
  ]);
  return JSON.parse(out) as EchoAnswer;
}
