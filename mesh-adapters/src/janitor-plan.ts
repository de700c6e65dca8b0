/**
 * The janitor's planner: given every Lease and every object that carries a detour mark, the writes
 * that remove the routes and objects of sessions whose Lease has expired or is gone, and then those
 * Leases. Pure and idempotent: run on its own result, it plans nothing. The agent, the CLI and
 * `detour clean` all call it, possibly at the same time; the preconditions on each write make the
 * losers of a race re-read and find nothing left to do.
 *
 * Read order matters to the caller: list the objects first and the Leases second, so a route seen
 * is never newer than the Lease list (a session creates its Lease before its first route).
 */
import type { MeshAdapter } from './adapter.ts';
import { InMemoryCluster } from './in-memory-cluster.ts';
import type { KubeObject } from './k8s-object.ts';
import { isKind, refOf, sameObject } from './k8s-object.ts';
import type { Lease } from './lease.ts';
import { isDetourLease, isExpired, leasesOf } from './lease.ts';
import type { Plan, Write } from './plan.ts';
import { writeFor } from './plan.ts';
import { isManagedByDetour, recordedLease, SESSION_LABEL, sessionsOn } from './session-records.ts';

export interface DeadSession {
  sessionId: string;
  /** `namespace/name` of the Lease the objects point to. */
  lease: string;
  why: 'lease-gone' | 'lease-expired';
  holder?: string;
}

export interface JanitorPlan extends Plan {
  dead: DeadSession[];
}

export interface JanitorInput {
  leases: readonly KubeObject[];
  /** Every object of the kinds the adapters' `revertQueries` name, all namespaces. */
  objects: readonly KubeObject[];
  now: Date;
  /** Extra seconds past expiry before a session counts as dead (clock skew between machines). */
  graceSeconds?: number;
  adapters: readonly MeshAdapter[];
}

/** Objects that hold a session's route: removed first, before what the routes point to. */
function routeBearing(o: KubeObject): boolean {
  return (
    isKind(o, 'networking.istio.io', 'VirtualService') ||
    isKind(o, 'networking.istio.io', 'EnvoyFilter') ||
    isKind(o, 'gateway.networking.k8s.io', 'HTTPRoute') ||
    (isKind(o, '', 'Service') && o.metadata.labels?.['detour.dev/shadow-of'] === undefined)
  );
}

export function planJanitor(input: JanitorInput): JanitorPlan {
  const leases = leasesOf(input.leases);
  const findLease = (key: string): Lease | undefined => {
    const [namespace, name] = key.split('/');
    return leases.find((l) => l.metadata.namespace === namespace && l.metadata.name === name);
  };

  // Which sessions have marks, and where their Lease is said to be.
  const marked = new Map<string, string>();
  for (const object of input.objects) {
    for (const id of sessionsOn(object)) {
      const key = recordedLease(object, id) ?? `${object.metadata.namespace ?? ''}/detour-${id}`;
      if (!marked.has(id)) marked.set(id, key);
    }
  }
  const dead: DeadSession[] = [];
  for (const [sessionId, key] of [...marked].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const lease = findLease(key);
    if (lease === undefined) dead.push({ sessionId, lease: key, why: 'lease-gone' });
    else if (isExpired(lease, input.now, input.graceSeconds)) {
      const d: DeadSession = { sessionId, lease: key, why: 'lease-expired' };
      if (lease.spec?.holderIdentity !== undefined) d.holder = lease.spec.holderIdentity;
      dead.push(d);
    }
  }
  // Expired detour Leases with no marks left anywhere go too (a session that died before routing).
  const expiredLeases = leases.filter((l) => isDetourLease(l) && isExpired(l, input.now, input.graceSeconds));

  // Revert dead sessions one after another on a model of the cluster, then turn the net change
  // of each object into one write (with the precondition of what was observed).
  const model = new InMemoryCluster(input.objects);
  const warnings: string[] = [];
  const touched: KubeObject[] = [];
  for (const session of dead) {
    for (const adapter of input.adapters) {
      const plan = adapter.planRevert(model.list(), session.sessionId);
      warnings.push(...plan.warnings);
      for (const write of plan.writes) {
        const ref = write.op === 'delete' ? write.ref : refOf(write.object);
        const before = input.objects.find((o) => sameObject(refOf(o), ref));
        if (before !== undefined && !touched.some((t) => sameObject(refOf(t), ref))) touched.push(before);
        model.apply(write);
      }
    }
  }
  // Created objects that no session is in any more (a session that died between two writes).
  for (const object of input.objects) {
    if (!isManagedByDetour(object) || isKind(object, 'coordination.k8s.io', 'Lease')) continue;
    if (sessionsOn(object).length > 0 || object.metadata.labels?.[SESSION_LABEL] !== undefined) continue;
    if (object.metadata.labels?.['detour.dev/shadow-of'] !== undefined) {
      const target = input.objects.find(
        (o) =>
          isKind(o, '', 'Service') &&
          o.metadata.namespace === object.metadata.namespace &&
          o.metadata.name === object.metadata.labels?.['detour.dev/shadow-of'],
      );
      if (target !== undefined && sessionsOn(target).length > 0) continue;
    }
    if (!touched.some((t) => sameObject(refOf(t), refOf(object)))) touched.push(object);
    model.apply({ op: 'delete', ref: refOf(object), reason: 'orphan' });
  }

  const first: Write[] = [];
  const then: Write[] = [];
  for (const before of touched) {
    const after = model.get(refOf(before));
    const afterClean = after === undefined ? undefined : withObservedVersion(after, before);
    const sessions = dead.filter((d) => sessionsOn(before).includes(d.sessionId)).map((d) => d.sessionId);
    const reason =
      sessions.length > 0
        ? `sessions ${sessions.join(', ')} are dead (Lease expired or gone)`
        : 'detour created it and no session uses it any more';
    const write = writeFor(before, afterClean, reason);
    if (write !== undefined) (routeBearing(before) ? first : then).push(write);
  }
  if (then.length > 0) for (const w of first) w.barrier = 'config-propagated';
  const plan: JanitorPlan = { writes: [...first, ...then], warnings, dead };
  for (const lease of expiredLeases) {
    const w = writeFor(lease, undefined, `Lease of ${lease.metadata.labels?.[SESSION_LABEL]} expired`);
    if (w !== undefined) plan.writes.push(w);
  }
  return plan;
}

/** The model bumped resourceVersions; the write must carry the one observed. */
function withObservedVersion(after: KubeObject, before: KubeObject): KubeObject {
  const copy = structuredClone(after);
  if (before.metadata.resourceVersion !== undefined)
    copy.metadata.resourceVersion = before.metadata.resourceVersion;
  else delete copy.metadata.resourceVersion;
  return copy;
}
