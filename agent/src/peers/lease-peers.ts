/**
 * Replicas of one agent know each other through the session Leases they already read to admit
 * CLIs: each replica a session registers with adds itself to `detour.dev/served-by` on its Lease
 * (and takes itself off when that tunnel drops), and every replica watches the namespace's session
 * Leases to keep its SessionDirectory current.
 */
import {
  type ClusterClient,
  type KubeObject,
  LEASE_ANNOTATIONS,
  type Lease,
  leasesOf,
  WriteConflictError,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '@detour/mesh-adapters/session-records';
import { CoordinationV1Api, type KubeConfig, makeInformer, type V1Lease } from '@kubernetes/client-node';
import type { Log } from '../log.ts';
import { type AgentSession, isRouted } from '../session-registry.ts';
import { type ServedBy, servedByOf, withHolder } from './served-by.ts';
import { SessionDirectory } from './session-directory.ts';

/** How long a broken watch waits before listing and watching again. */
const rewatchMs = 1_000;
const writeAttempts = 5;

export interface LeasePeers {
  directory: SessionDirectory;
  /** Records on the session's Lease that this replica holds its tunnel; resolves once written. */
  recordHolder(session: AgentSession): Promise<void>;
  /** Takes this replica off the session's Lease: its tunnel dropped. */
  releaseHolder(session: AgentSession): Promise<void>;
  stop(): void;
}

export interface LeasePeersOptions {
  kc: KubeConfig;
  client: ClusterClient;
  namespace: string;
  /** This replica: its pod name and the `ip:port` its inbound listener is reached at. */
  pod: string;
  address: string;
  log: Log;
  /** Whether a session is registered here (again: a CLI that reconnected stays a holder). */
  isLive: (sessionId: string) => boolean;
}

export async function watchLeasePeers(options: LeasePeersOptions): Promise<LeasePeers> {
  const { kc, client, namespace, pod, address, log, isLive } = options;
  const directory = new SessionDirectory(pod);
  const api = kc.makeApiClient(CoordinationV1Api);
  const labelSelector = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
  const informer = makeInformer<V1Lease>(
    kc,
    `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
    () => api.listNamespacedLease({ namespace, labelSelector }),
    labelSelector,
  );
  let stopped = false;
  informer.on('add', (lease) => directory.update(lease));
  informer.on('update', (lease) => directory.update(lease));
  informer.on('delete', (lease) => directory.remove(lease.metadata?.name ?? ''));
  // A watch that fails (the apiserver restarted, a network blip) lists and watches again: until then
  // this replica forwards by what it knew, and serves its own sessions regardless.
  let retrying = false;
  const failed = (error: unknown) => {
    if (stopped || retrying) return;
    retrying = true;
    log.warn('peers.watch-failed', {
      reason: String((error as Error)?.message ?? error),
      retryMs: rewatchMs,
    });
    setTimeout(() => {
      retrying = false;
      if (!stopped) informer.start().catch(failed);
    }, rewatchMs).unref();
  };
  informer.on('error', failed);
  await informer.start().then(() => log.info('peers.watching', { namespace, pod, address }), failed);

  /** Rewrites the session's served-by with `edit`, retrying when another writer came first. */
  async function editServedBy(
    session: AgentSession,
    edit: (current: ServedBy | undefined) => ServedBy | undefined,
    event: string,
  ): Promise<void> {
    if (!session.lease) return;
    const { name } = session.lease;
    for (let attempt = 1; attempt <= writeAttempts; attempt++) {
      const lease = leasesOf(await client.list({ ...QUERIES.leases, namespace })).find(
        (candidate: KubeObject) => candidate.metadata.name === name,
      ) as Lease | undefined;
      if (!lease) return;
      const annotations = { ...lease.metadata.annotations };
      const before = annotations[LEASE_ANNOTATIONS.servedBy];
      const served = edit(servedByOf(annotations));
      if (served) annotations[LEASE_ANNOTATIONS.servedBy] = JSON.stringify(served);
      else delete annotations[LEASE_ANNOTATIONS.servedBy];
      if (annotations[LEASE_ANNOTATIONS.servedBy] === before) return;
      lease.metadata.annotations = annotations;
      try {
        await client.replace(lease);
        log.info(event, { session: session.id, lease: name, attempt, holders: served?.holders.length ?? 0 });
        return;
      } catch (error) {
        if (!(error instanceof WriteConflictError) || attempt === writeAttempts) throw error;
      }
    }
  }

  const self = { pod, address };
  return {
    directory,
    recordHolder: (session) =>
      editServedBy(
        session,
        (current) =>
          withHolder(
            current,
            self,
            isRouted(session)
              ? {
                  mode: session.mode,
                  filter: session.filter,
                  ...(session.targetHost !== undefined ? { targetHost: session.targetHost } : {}),
                }
              : { mode: session.mode },
          ),
        'peers.holder-recorded',
      ),
    releaseHolder: (session) =>
      editServedBy(
        session,
        (current) => (isLive(session.id) ? current : withHolder(current, self, undefined)),
        'peers.holder-released',
      ),
    stop() {
      stopped = true;
      void informer.stop();
    },
  };
}
