/**
 * Feature environments: a DestinationRule subset for the environment's pods. Added before the route
 * that names it and removed after that route is gone (make-before-break), shared between sessions
 * that route to the same environment, and removed only when the last of them leaves — and only if
 * detour added it.
 */
import type { ObservedObjects } from '../adapter.ts';
import { UneditableObjectError } from '../errors.ts';
import { parseServiceHost } from '../hosts.ts';
import { isKind, refOf } from '../k8s-object.ts';
import type { Barrier, Write } from '../plan.ts';
import { writeFor } from '../plan.ts';
import type { SessionIntent } from '../session-intent.ts';
import {
  addOwner,
  isManagedByDetour,
  leaseKey,
  leaseOwnerReference,
  managedLabels,
  readSessions,
  removeOwnerByName,
  writeSessions,
} from '../session-records.ts';
import { governingDestinationRule } from './governing.ts';
import type { DestinationRule } from './types.ts';
import { VS_API_VERSION } from './types.ts';

export function createdDestinationRuleName(host: string): string {
  return `detour-${parseServiceHost(host).service}`.slice(0, 253);
}

/** The write that makes the session's subset exist, or undefined when it already does. */
export function planSubset(
  observed: ObservedObjects,
  intent: SessionIntent,
  barrier: Barrier,
): Write | undefined {
  if (intent.mode.kind !== 'feature-env') return undefined;
  const { subset } = intent.mode;
  const existing = governingDestinationRule(observed, intent.target.host);
  const owner = leaseOwnerReference(intent.lease, intent.target.namespace);
  const record = { lease: leaseKey(intent.lease), holder: intent.holder, subset: subset.name };
  if (existing === undefined) {
    const dr: DestinationRule = {
      apiVersion: VS_API_VERSION,
      kind: 'DestinationRule',
      metadata: { name: createdDestinationRuleName(intent.target.host), namespace: intent.target.namespace },
      spec: { host: intent.target.host, subsets: [{ name: subset.name, labels: { ...subset.labels } }] },
    };
    dr.metadata.labels = managedLabels();
    writeSessions(dr, { sessions: { [intent.sessionId]: record }, added: { subsets: [subset.name] } });
    addOwner(dr, owner);
    return writeFor(
      undefined,
      dr,
      `subset ${subset.name} for ${intent.target.host} (no DestinationRule existed)`,
      barrier,
    );
  }
  const desired = structuredClone(existing);
  desired.spec ??= {};
  const annotation = readSessions(desired);
  const subsets = desired.spec.subsets ?? [];
  const same = subsets.find((s) => s.name === subset.name);
  if (same !== undefined) {
    const wanted = JSON.stringify(Object.entries(subset.labels).sort());
    if (JSON.stringify(Object.entries(same.labels ?? {}).sort()) !== wanted) {
      throw new UneditableObjectError(
        refOf(existing),
        `spec.subsets[name=${subset.name}].labels`,
        `subset ${subset.name} already exists with labels ${JSON.stringify(same.labels ?? {})}, not ${JSON.stringify(subset.labels)}`,
        'name the environment subset differently, or use the labels of the existing subset',
      );
    }
  } else {
    if (desired.spec.subsets === undefined) annotation.added = { ...annotation.added, subsetsList: true };
    subsets.push({ name: subset.name, labels: { ...subset.labels } });
    desired.spec.subsets = subsets;
    annotation.added = {
      ...annotation.added,
      subsets: [...(annotation.added?.subsets ?? []), subset.name].sort(),
    };
  }
  annotation.sessions[intent.sessionId] = record;
  writeSessions(desired, annotation);
  if (isManagedByDetour(desired)) addOwner(desired, owner);
  return writeFor(
    existing,
    desired,
    `subset ${subset.name} of ${intent.target.host} for session ${intent.sessionId}`,
    barrier,
  );
}

/** The writes that take `sessionId` out of every DestinationRule it is recorded in. */
export function planSubsetRevert(observed: ObservedObjects, sessionId: string): Write[] {
  const writes: Write[] = [];
  for (const dr of observed.filter((o) =>
    isKind(o, 'networking.istio.io', 'DestinationRule'),
  ) as DestinationRule[]) {
    const annotation = readSessions(dr);
    const record = annotation.sessions[sessionId];
    if (record === undefined) continue;
    const desired = structuredClone(dr);
    delete annotation.sessions[sessionId];
    const leaseName = record.lease.split('/')[1] ?? '';
    removeOwnerByName(desired, leaseName);
    const subsetName = record.subset;
    const stillUsed = Object.values(annotation.sessions).some((r) => r.subset === subsetName);
    if (subsetName !== undefined && !stillUsed && annotation.added?.subsets?.includes(subsetName)) {
      desired.spec ??= {};
      desired.spec.subsets = (desired.spec.subsets ?? []).filter((s) => s.name !== subsetName);
      const remaining = annotation.added.subsets.filter((s) => s !== subsetName);
      annotation.added = { ...annotation.added, subsets: remaining };
      if (remaining.length === 0) {
        delete annotation.added.subsets;
        if (annotation.added.subsetsList && desired.spec.subsets.length === 0) delete desired.spec.subsets;
        delete annotation.added.subsetsList;
      }
      if (Object.keys(annotation.added).length === 0) delete annotation.added;
    }
    writeSessions(desired, annotation);
    const gone = isManagedByDetour(dr) && Object.keys(annotation.sessions).length === 0;
    const write = writeFor(
      dr,
      gone ? undefined : desired,
      gone
        ? `last session (${sessionId}) left the DestinationRule detour created`
        : `remove session ${sessionId}${subsetName ? ` (subset ${subsetName})` : ''}`,
    );
    if (write) writes.push(write);
  }
  return writes;
}
