// The sample system in namespace `staging` (sidecars injected): frontend -> orders -> payments, each a
// one-file Node app from this folder in the image detour.local/sample:dev; orders-v2 and payments-v2
// (version v2) for feature-environment tests; DestinationRules with subsets v1/v2 and VirtualServices
// that send everything to v1 (the baseline detour's routes go on top of); a `caller` pod that sends
// requests from inside the mesh; and the detour agent rendered from manifests/agent
// (image detour.local/agent:dev). Applied as admin; idempotent.
import { existsSync } from 'node:fs';
import { agentManifests as renderAgentManifests } from '@detour/cli/install/agent-manifests';
import { execInPod, kubectl, waitForPodsReady } from '../cluster.ts';
import { ClusterError } from '../errors.ts';
import { applyManifest } from '../istio/istio.ts';
import { archiveDigest, meshImages } from '../mesh.ts';

export const sampleNamespace = 'staging';
export const sampleImage = 'detour.local/sample:dev';
export const agentImage = 'detour.local/agent:dev';
/** Container port of every sample app, and the port of their Services. */
export const appPort = 8080;

export type Manifest = Record<string, unknown>;

export function serviceAccount(name: string, namespace = sampleNamespace): Manifest {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } };
}

/**
 * A Deployment of one sample app. The pod template carries the image archive's digest, so a rebuilt
 * image (same tag) rolls the pods.
 */
export function deployment(
  app: string,
  version: string,
  digest: string,
  env: Record<string, string> = {},
  namespace = sampleNamespace,
): Manifest {
  const name = version === 'v1' ? app : `${app}-${version}`;
  const labels = { app, version };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels, annotations: { 'detour.local/image-digest': digest } },
        spec: {
          serviceAccountName: app,
          terminationGracePeriodSeconds: 2,
          containers: [
            {
              name: app,
              image: sampleImage,
              imagePullPolicy: 'IfNotPresent',
              args: [`/app/${app}.ts`],
              ports: [{ name: 'http', containerPort: appPort }],
              env: [
                { name: 'PORT', value: String(appPort) },
                { name: 'VERSION', value: version },
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                ...Object.entries(env).map(([key, value]) => ({ name: key, value })),
              ],
            },
          ],
        },
      },
    },
  };
}

export function service(app: string, namespace = sampleNamespace): Manifest {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: app, namespace, labels: { app } },
    spec: {
      selector: { app },
      // `http` names the protocol for Istio (no sniffing).
      ports: [{ name: 'http', port: appPort, targetPort: 'http' }],
    },
  };
}

function destinationRule(app: string): Manifest {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: app, namespace: sampleNamespace },
    spec: {
      host: app,
      subsets: [
        { name: 'v1', labels: { version: 'v1' } },
        { name: 'v2', labels: { version: 'v2' } },
      ],
    },
  };
}

/** The baseline: every request to `app` goes to v1 (the Service selects v1 and v2 pods alike). */
export function baselineVirtualService(app: string): Manifest {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: app, namespace: sampleNamespace },
    spec: {
      hosts: [app],
      http: [{ name: 'default', route: [{ destination: { host: app, subset: 'v1' } }] }],
    },
  };
}

export function callerPod(digest: string, namespace = sampleNamespace): Manifest {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'caller',
      namespace,
      labels: { app: 'caller' },
      annotations: { 'detour.local/image-digest': digest },
    },
    spec: {
      serviceAccountName: 'caller',
      terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'caller', image: sampleImage, imagePullPolicy: 'IfNotPresent', args: ['/app/caller.ts'] },
      ],
    },
  };
}

/**
 * manifests/agent rendered as `detour install` renders it (namespace, image), plus the digest
 * annotation. No token Secret: CLIs are admitted by their session Lease (DETOUR_NAMESPACE is set).
 */
export function agentManifests(digest: string): Manifest[] {
  return renderAgentManifests({
    namespace: sampleNamespace,
    image: agentImage,
    podAnnotations: { 'detour.local/image-digest': digest },
  });
}

export function list(items: Manifest[]): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

export interface DeployOptions {
  log?: (line: string) => void;
  /** Also deploy the detour agent (default true). */
  agent?: boolean;
  timeoutMs?: number;
}

/** Waits until every Deployment named has rolled out in `namespace`. */
export async function waitForRollouts(namespace: string, names: string[], timeoutMs: number): Promise<void> {
  for (const name of names) {
    const rollout = await kubectl('admin', [
      '-n',
      namespace,
      'rollout',
      'status',
      `deployment/${name}`,
      `--timeout=${Math.ceil(timeoutMs / 1000)}s`,
    ]);
    if (rollout.code !== 0) {
      throw new ClusterError(
        'CLUSTER_TIMEOUT',
        `deployment/${name} in ${namespace}: ${rollout.stderr.trim()}`,
      );
    }
  }
}

/** Applies the sample system (and the agent) and waits until every pod is Ready and answers. */
export async function deploySample(options: DeployOptions = {}): Promise<void> {
  const log = options.log ?? (() => {});
  for (const file of [meshImages.sample, meshImages.agent]) {
    if (!existsSync(file)) {
      throw new ClusterError(
        'CLUSTER_BINARIES_MISSING',
        `no image archive ${file}: run node tests/cluster/mesh.ts up (or bash tests/cluster/sample/build-images.sh)`,
      );
    }
  }
  const sampleDigest = archiveDigest(meshImages.sample);
  const started = performance.now();
  await applyManifest(
    list([
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: sampleNamespace, labels: { 'istio-injection': 'enabled' } },
      },
    ]),
  );
  // A Pod's containers never change in place: a caller started from an older sample image is replaced.
  const caller = await kubectl('admin', [
    '-n',
    sampleNamespace,
    'get',
    'pod',
    'caller',
    '-o',
    "jsonpath={.metadata.annotations['detour\\.local/image-digest']}",
  ]);
  if (caller.code === 0 && caller.stdout.trim() !== sampleDigest) {
    log('  caller pod runs an older sample image: replacing it');
    await kubectl('admin', [
      '-n',
      sampleNamespace,
      'delete',
      'pod',
      'caller',
      '--wait=true',
      '--timeout=60s',
    ]);
  }
  const apps = ['frontend', 'orders', 'payments'];
  await applyManifest(
    list([
      ...[...apps, 'caller'].map((name) => serviceAccount(name)),
      ...apps.map((app) => service(app)),
      deployment('frontend', 'v1', sampleDigest),
      deployment('orders', 'v1', sampleDigest),
      deployment('orders', 'v2', sampleDigest),
      deployment('payments', 'v1', sampleDigest),
      deployment('payments', 'v2', sampleDigest),
      destinationRule('orders'),
      destinationRule('payments'),
      baselineVirtualService('orders'),
      baselineVirtualService('payments'),
      callerPod(sampleDigest),
    ]),
  );
  if (options.agent !== false) await applyManifest(list(agentManifests(archiveDigest(meshImages.agent))));
  const timeoutMs = options.timeoutMs ?? 180_000;
  await waitForRollouts(
    sampleNamespace,
    [
      'frontend',
      'orders',
      'orders-v2',
      'payments',
      'payments-v2',
      ...(options.agent !== false ? ['detour-agent'] : []),
    ],
    timeoutMs,
  );
  await waitForPodsReady(sampleNamespace, ['caller'], timeoutMs);
  log(`sample system (and agent) ready in ${((performance.now() - started) / 1000).toFixed(1)}s`);
}

export interface CallerAnswer {
  status: number;
  body: Record<string, unknown> & {
    service?: string;
    version?: string;
    pod?: string;
    from?: string | null;
    headers?: Record<string, string | null>;
    called?: CallerCall[];
  };
}
export interface CallerCall {
  url: string;
  status: number;
  body?: CallerAnswer['body'];
  error?: string;
}

/** One request from the caller pod (through its sidecar), e.g. callerGet('http://frontend:8080/', { 'x-dev': 'dev-a' }). */
export async function callerGet(
  url: string,
  headers: Record<string, string> = {},
  namespace = sampleNamespace,
): Promise<CallerAnswer> {
  const result = await execInPod(namespace, 'caller', [
    'node',
    '/app/caller.ts',
    'get',
    url,
    ...Object.entries(headers).map(([name, value]) => `${name}=${value}`),
  ]);
  if (result.code !== 0) {
    throw new ClusterError(
      'CLUSTER_COMMAND_FAILED',
      `caller get ${url} failed (${result.code}): ${result.stderr.trim()}`,
    );
  }
  return JSON.parse(result.stdout) as CallerAnswer;
}
