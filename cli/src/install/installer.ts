import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  allAdapters,
  type ClusterClient,
  canonicalJson,
  describeRef,
  isDetourLease,
  isExpired,
  KubeApiError,
  type KubeObject,
  leasesOf,
  namespacedClient,
  type ObjectRef,
  refOf,
  runJanitor,
  summarizeLease,
  WriteConflictError,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';
import { DetourError } from '@detour/router/errors';
import type { Reporter } from '../reporter.ts';
import { AGENT_KINDS, AGENT_NAME_LABEL, isInstalledByDetour } from './agent-manifests.ts';

/** sha256 of what install wrote: an object that still carries it is as install left it. */
export const INSTALL_HASH_ANNOTATION = 'detour.dev/install-hash';

export type ApplyOutcome = 'created' | 'updated' | 'unchanged';

function queryOf(object: KubeObject) {
  const kind = AGENT_KINDS.find((k) => k.kind === object.kind);
  const resource = kind?.resource ?? (object.kind === 'Pod' ? 'pods' : undefined);
  if (!resource) throw new Error(`install does not apply ${object.kind} objects`);
  return { apiVersion: object.apiVersion, kind: object.kind, resource, namespace: object.metadata.namespace };
}

async function current(client: ClusterClient, object: KubeObject): Promise<KubeObject | undefined> {
  return (await client.list(queryOf(object))).find((o) => o.metadata.name === object.metadata.name);
}

function namespaceMissing(error: unknown, namespace: string | undefined): DetourError | undefined {
  if (!(error instanceof KubeApiError) || error.status !== 404) return undefined;
  return new DetourError(
    'DETOUR_NAMESPACE_MISSING',
    `namespace ${namespace} does not exist: create it first (kubectl create namespace ${namespace}; with Istio also kubectl label namespace ${namespace} istio-injection=enabled)`,
  );
}

/**
 * Creates each object, or replaces it when what install wrote changed (its hash annotation), or
 * leaves it: running install twice writes nothing the second time.
 */
export async function applyObjects(
  client: ClusterClient,
  objects: readonly KubeObject[],
): Promise<Array<{ ref: ObjectRef; outcome: ApplyOutcome }>> {
  const results: Array<{ ref: ObjectRef; outcome: ApplyOutcome }> = [];
  for (const original of objects) {
    const object = structuredClone(original);
    const hash = createHash('sha256').update(canonicalJson(object)).digest('hex');
    object.metadata.annotations = { ...object.metadata.annotations, [INSTALL_HASH_ANNOTATION]: hash };
    const ref = refOf(object);
    for (let attempt = 1; ; attempt++) {
      const found = await current(client, object);
      try {
        if (!found) {
          await client
            .create(object)
            .catch((error: unknown) => Promise.reject(namespaceMissing(error, ref.namespace) ?? error));
          results.push({ ref, outcome: 'created' });
        } else if (found.metadata.annotations?.[INSTALL_HASH_ANNOTATION] === hash) {
          results.push({ ref, outcome: 'unchanged' });
        } else {
          await client.replace({
            ...object,
            metadata: { ...object.metadata, resourceVersion: found.metadata.resourceVersion },
          });
          results.push({ ref, outcome: 'updated' });
        }
        break;
      } catch (error) {
        // Someone wrote it between the read and the write: read again (a few times at most).
        if (!(error instanceof WriteConflictError) || attempt >= 5) throw error;
      }
    }
  }
  return results;
}

interface DeploymentStatus {
  replicas?: number;
  updatedReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
}

interface PodShape {
  metadata: { name: string; labels?: Record<string, string> };
  spec?: {
    serviceAccountName?: string;
    containers?: Array<{ name: string; env?: Array<{ name: string; value?: string }> }>;
    initContainers?: Array<{ name: string; env?: Array<{ name: string; value?: string }> }>;
  };
  status?: {
    phase?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ name: string; state?: { waiting?: { reason?: string; message?: string } } }>;
    initContainerStatuses?: Array<{
      name: string;
      state?: { waiting?: { reason?: string; message?: string } };
    }>;
  };
}

/** Waiting reasons that no amount of waiting fixes. */
const hopeless = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CrashLoopBackOff',
]);

export function isPodReady(pod: KubeObject): boolean {
  return (
    (pod as PodShape).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false
  );
}

/** `detour-agent-x: Pending (ContainerCreating)` for a pod that is not ready; the hopeless reason if any. */
export function podProblem(pod: KubeObject): { text: string; hopeless?: string } {
  const { status } = pod as PodShape;
  const waiting = [...(status?.initContainerStatuses ?? []), ...(status?.containerStatuses ?? [])]
    .map((c) => ({ name: c.name, ...c.state?.waiting }))
    .filter((w) => w.reason);
  const stuck = waiting.find((w) => w.reason && hopeless.has(w.reason));
  const reasons = waiting.map((w) => `${w.name}: ${w.reason}${w.message ? ` ${w.message}` : ''}`).join('; ');
  return {
    text: `${pod.metadata.name}: ${status?.phase ?? 'Pending'}${reasons ? ` (${reasons})` : ''}`,
    ...(stuck?.reason ? { hopeless: stuck.reason } : {}),
  };
}

export function selects(selector: Record<string, string>, object: KubeObject): boolean {
  return Object.entries(selector).every(([key, value]) => object.metadata.labels?.[key] === value);
}

export interface RolloutState {
  done: boolean;
  /** `1 of 1 pods ready`, with what the others wait for */
  summary: string;
  /** A pod waits for something that will not come (image pull, config, crash loop). */
  hopeless?: string;
}

/** kubectl rollout status's test: the new generation observed, updated and available, old pods gone. */
export function rolloutState(deployment: KubeObject, pods: readonly KubeObject[]): RolloutState {
  const status = (deployment.status ?? {}) as DeploymentStatus;
  const desired = (deployment.spec as { replicas?: number } | undefined)?.replicas ?? 1;
  const observed = (status.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0);
  const done =
    observed &&
    (status.updatedReplicas ?? 0) >= desired &&
    (status.availableReplicas ?? 0) >= desired &&
    (status.replicas ?? 0) <= (status.updatedReplicas ?? 0);
  const notReady = pods.filter((pod) => !isPodReady(pod)).map(podProblem);
  const hopeless = notReady.find((p) => p.hopeless);
  return {
    done,
    summary: `${status.readyReplicas ?? 0} of ${desired} pod(s) ready${notReady.length ? `; ${notReady.map((p) => p.text).join(', ')}` : ''}`,
    ...(hopeless ? { hopeless: hopeless.text } : {}),
  };
}

const podsQuery = { apiVersion: 'v1', kind: 'Pod', resource: 'pods' } as const;
const replicaSetsQuery = { apiVersion: 'apps/v1', kind: 'ReplicaSet', resource: 'replicasets' } as const;

export async function listPods(
  client: ClusterClient,
  namespace: string,
  selector: Record<string, string>,
): Promise<KubeObject[]> {
  return (await client.list({ ...podsQuery, namespace })).filter((pod) => selects(selector, pod));
}

/** Waits until the Deployment's rollout is done, reporting each change; fails at once when it cannot finish. */
export async function waitForRollout(
  client: ClusterClient,
  ref: { namespace: string; name: string },
  reporter: Reporter,
  timeoutMs: number,
  intervalMs = 500,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const fix = `see kubectl describe pods -n ${ref.namespace} -l ${AGENT_NAME_LABEL}=${ref.name}`;
  let last = '';
  for (;;) {
    const deployment = (
      await client.list({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        resource: 'deployments',
        namespace: ref.namespace,
      })
    ).find((d) => d.metadata.name === ref.name);
    if (!deployment)
      throw new DetourError(
        'DETOUR_INSTALL_FAILED',
        `Deployment ${ref.namespace}/${ref.name} vanished during the rollout`,
      );
    const selector =
      (deployment.spec as { selector?: { matchLabels?: Record<string, string> } }).selector?.matchLabels ??
      {};
    const state = rolloutState(deployment, await listPods(client, ref.namespace, selector));
    if (state.summary !== last) {
      reporter.step('install.rollout', `rollout of ${ref.namespace}/${ref.name}: ${state.summary}`);
      last = state.summary;
    }
    if (state.done) return;
    if (state.hopeless)
      throw new DetourError(
        'DETOUR_INSTALL_ROLLOUT',
        `the agent cannot start: ${state.hopeless}. For an image the cluster cannot pull, push it to a registry the nodes reach and pass --image REF; ${fix}`,
      );
    if (Date.now() > deadline)
      throw new DetourError(
        'DETOUR_INSTALL_ROLLOUT',
        `the agent's rollout did not finish within ${Math.round(timeoutMs / 1000)} s (${state.summary}): ${fix}`,
      );
    await sleep(intervalMs);
  }
}

/** The pod's identity in an Istio mesh: whether it has a sidecar, and the SPIFFE id it presents. */
export function meshIdentity(pod: KubeObject): { sidecar: boolean; spiffe?: string } {
  const { spec, metadata } = pod as PodShape & { metadata: { namespace?: string } };
  const proxy = [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])].find(
    (c) => c.name === 'istio-proxy',
  );
  if (!proxy) return { sidecar: false };
  const env = (name: string) => proxy.env?.find((e) => e.name === name)?.value;
  const trustDomain = env('TRUST_DOMAIN') || 'cluster.local';
  return {
    sidecar: true,
    spiffe: `spiffe://${trustDomain}/ns/${metadata.namespace}/sa/${spec?.serviceAccountName ?? 'default'}`,
  };
}

/** Live detour sessions in a namespace: what uninstall refuses to pull the agent from under. */
export async function liveSessions(client: ClusterClient, namespace: string, now = new Date()) {
  return leasesOf(await client.list({ ...QUERIES.leases, namespace }))
    .filter((lease) => isDetourLease(lease) && !isExpired(lease, now))
    .map((lease) => ({ lease, summary: summarizeLease(lease) }));
}

export interface UninstallResult {
  removed: ObjectRef[];
  endedSessions: string[];
}

/**
 * Removes what `detour install` created in the namespace (by its labels) and waits until it and
 * its pods are gone. With live sessions it refuses, naming them; `force` ends them first (their
 * Leases deleted, their routes reverted), so nothing routes to an agent that is no more.
 */
export async function uninstallAgent(options: {
  client: ClusterClient;
  namespace: string;
  force: boolean;
  reporter: Reporter;
  timeoutMs: number;
}): Promise<UninstallResult> {
  const { client, namespace, reporter } = options;
  const live = await liveSessions(client, namespace);
  const names = live.map(
    ({ lease, summary }) =>
      `${summary?.sessionId ?? lease.metadata.name} of ${summary?.holder ?? 'unknown'} (${summary ? `${summary.host === undefined ? summary.mode : `${summary.host}:${summary.port}`}, ` : ''}since ${summary?.since ?? '?'})`,
  );
  if (live.length > 0 && !options.force)
    throw new DetourError(
      'DETOUR_SESSIONS_LIVE',
      `${live.length} live session(s) in ${namespace} use the agent: ${names.join('; ')}. End them (their CLIs), wait until their Leases expire, or pass --force to end them and revert their routes`,
    );
  const endedSessions: string[] = [];
  for (const { lease, summary } of live) {
    await client.delete(refOf(lease), { uid: lease.metadata.uid });
    endedSessions.push(summary?.sessionId ?? lease.metadata.name);
  }
  if (live.length > 0) {
    const result = await runJanitor(namespacedClient(client, namespace), allAdapters(), () => new Date());
    reporter.warn(
      'uninstall.sessions-ended',
      `--force: ended ${names.join('; ')}; ${result.applied.length} route write(s) reverted`,
    );
  }
  // The Deployment's ReplicaSets and pods carry the install labels too (from its pod template).
  const installed = async () =>
    (
      await Promise.all(
        [...AGENT_KINDS, replicaSetsQuery, podsQuery].map((kind) => client.list({ ...kind, namespace })),
      )
    )
      .flat()
      .filter(isInstalledByDetour);
  const objects = (await installed()).filter((o) => o.kind !== 'Pod' && o.kind !== 'ReplicaSet');
  // The Service first, so the mesh stops sending to the agent; the ServiceAccount last.
  for (const object of [...objects].reverse()) {
    await client.delete(refOf(object), { uid: object.metadata.uid });
    reporter.step('uninstall.deleted', `deleted ${describeRef(refOf(object))}`);
  }
  const deadline = Date.now() + options.timeoutMs;
  for (let left = await installed(); left.length > 0; left = await installed()) {
    if (Date.now() > deadline)
      throw new DetourError(
        'DETOUR_UNINSTALL_TIMEOUT',
        `still there after ${Math.round(options.timeoutMs / 1000)} s: ${left.map((o) => describeRef(refOf(o))).join(', ')}; see kubectl get all -n ${namespace} -l app.kubernetes.io/managed-by=detour-install`,
      );
    await sleep(500);
  }
  return { removed: objects.map(refOf), endedSessions };
}
