/**
 * How detour marks what it did, so that anyone — the session itself, another developer's CLI, the
 * janitor — can undo exactly that and nothing else, from the object alone:
 *
 * - objects detour creates carry `app.kubernetes.io/managed-by: detour` and, when one session owns
 *   them, `detour.dev/session: <id>`;
 * - objects detour edits (and shared objects it creates) carry the annotation
 *   `detour.dev/sessions`: canonical JSON of which sessions are in the object, with the Lease of
 *   each, plus what detour added on the object's behalf that must go when the last session leaves.
 */
import { canonicalJson } from './canonical.ts';
import type { KubeObject, OwnerReference } from './k8s-object.ts';
import type { LeaseRef } from './session-intent.ts';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'detour';
export const SESSION_LABEL = 'detour.dev/session';
export const SESSIONS_ANNOTATION = 'detour.dev/sessions';
/** On objects one session owns: `namespace/name` of its Lease. */
export const LEASE_ANNOTATION = 'detour.dev/lease';

export interface SessionRecord {
  /** `namespace/name` of the session's Lease. */
  lease: string;
  holder?: string;
  /** feature-env: the DestinationRule subset this session routes to. */
  subset?: string;
  /** service adapter: the Service port this session takes and the agent port it points to. */
  port?: number;
  agentPort?: number;
}

export interface SessionsAnnotation {
  sessions: Record<string, SessionRecord>;
  /** Parts of the object that detour added and removes with its last session. */
  added?: {
    /** `spec.http` did not exist before detour added a route. */
    http?: boolean;
    /** DestinationRule subsets detour added (names). */
    subsets?: string[];
    /** `spec.subsets` did not exist before detour added one. */
    subsetsList?: boolean;
  };
  /** service adapter: the Service's selector and ports before the first session. */
  original?: { selector?: Record<string, string>; ports?: unknown[] };
  /** service adapter: the selector and ports detour wrote (to tell whether someone changed them since). */
  written?: { selector?: Record<string, string>; ports?: unknown[] };
}

export function leaseKey(lease: LeaseRef): string {
  return `${lease.namespace}/${lease.name}`;
}

export function readSessions(object: KubeObject): SessionsAnnotation {
  const raw = object.metadata.annotations?.[SESSIONS_ANNOTATION];
  if (raw === undefined) return { sessions: {} };
  try {
    const parsed = JSON.parse(raw) as SessionsAnnotation;
    if (parsed === null || typeof parsed !== 'object' || typeof parsed.sessions !== 'object')
      return { sessions: {} };
    return parsed;
  } catch {
    // A hand-edited, unparsable annotation: treat as no sessions rather than fail cleanup.
    return { sessions: {} };
  }
}

/** Writes the annotation (canonical JSON), or removes it — and an emptied annotations map — when empty. */
export function writeSessions(object: KubeObject, value: SessionsAnnotation): void {
  const isEmpty =
    Object.keys(value.sessions).length === 0 &&
    value.original === undefined &&
    value.written === undefined &&
    (value.added === undefined || Object.keys(value.added).length === 0);
  if (isEmpty) {
    if (object.metadata.annotations) {
      delete object.metadata.annotations[SESSIONS_ANNOTATION];
      if (Object.keys(object.metadata.annotations).length === 0) delete object.metadata.annotations;
    }
    return;
  }
  object.metadata.annotations ??= {};
  object.metadata.annotations[SESSIONS_ANNOTATION] = canonicalJson(value);
}

export function isManagedByDetour(object: KubeObject): boolean {
  return object.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}

export function managedLabels(sessionId?: string): Record<string, string> {
  const labels: Record<string, string> = { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE };
  if (sessionId !== undefined) labels[SESSION_LABEL] = sessionId;
  return labels;
}

/**
 * ownerReference to a session's Lease, when the Lease is in the object's namespace (Kubernetes
 * ignores cross-namespace owners) and its uid is known. With several owners, garbage collection
 * deletes the object only when all of them are gone — exactly "when the last session leaves".
 */
export function leaseOwnerReference(
  lease: LeaseRef,
  objectNamespace: string | undefined,
): OwnerReference | undefined {
  if (lease.uid === undefined || lease.namespace !== objectNamespace) return undefined;
  return { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: lease.name, uid: lease.uid };
}

export function addOwner(object: KubeObject, owner: OwnerReference | undefined): void {
  if (owner === undefined) return;
  const owners = object.metadata.ownerReferences ?? [];
  if (!owners.some((o) => o.uid === owner.uid)) owners.push(owner);
  object.metadata.ownerReferences = owners;
}

export function removeOwnerByName(object: KubeObject, leaseName: string): void {
  const owners = (object.metadata.ownerReferences ?? []).filter(
    (o) => !(o.kind === 'Lease' && o.apiVersion.startsWith('coordination.k8s.io/') && o.name === leaseName),
  );
  if (owners.length > 0) object.metadata.ownerReferences = owners;
  else delete object.metadata.ownerReferences;
}

/** Every session id detour has a mark of on this object (annotation records and the session label). */
export function sessionsOn(object: KubeObject): string[] {
  const ids = new Set(Object.keys(readSessions(object).sessions));
  const labelled = object.metadata.labels?.[SESSION_LABEL];
  if (labelled !== undefined && isManagedByDetour(object)) ids.add(labelled);
  return [...ids].sort();
}

/** The Lease of a session as the object records it (`namespace/name`), if any. */
export function recordedLease(object: KubeObject, sessionId: string): string | undefined {
  const record = readSessions(object).sessions[sessionId];
  if (record !== undefined) return record.lease;
  const labelled = object.metadata.labels?.[SESSION_LABEL];
  if (labelled === sessionId) {
    const lease = object.metadata.annotations?.[LEASE_ANNOTATION];
    if (lease !== undefined) return lease;
  }
  return undefined;
}
