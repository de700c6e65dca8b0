/**
 * A plan is the output of every planner: an ordered list of object writes, each with the reason a
 * person would want to read. Planners compute desired objects from observed ones; `writeFor` turns
 * one (observed, desired) pair into at most one write, so a plan computed on an object that
 * already has the desired state is empty (idempotence by construction).
 */
import { canonicalJson } from './canonical.ts';
import type { KubeObject, ObjectRef } from './k8s-object.ts';
import { refOf } from './k8s-object.ts';

export type Write =
  | { op: 'create'; object: KubeObject; reason: string; barrier?: Barrier }
  /** `object.metadata.resourceVersion` is the precondition: the write fails if the object moved on. */
  | { op: 'replace'; object: KubeObject; resourceVersion: string; reason: string; barrier?: Barrier }
  /** `uid`/`resourceVersion` are preconditions when known: never delete someone else's object of the same name. */
  | {
      op: 'delete';
      ref: ObjectRef;
      uid?: string;
      resourceVersion?: string;
      reason: string;
      barrier?: Barrier;
    };

/**
 * `config-propagated`: the applier waits until the mesh has this write in effect before the next
 * one (make-before-break: a DestinationRule subset must exist in the proxies before a route names it).
 */
export type Barrier = 'config-propagated';

export interface Plan {
  /** Applied in order. */
  writes: Write[];
  /** Things the user should know that do not stop the session. */
  warnings: string[];
}

export const emptyPlan = (): Plan => ({ writes: [], warnings: [] });

/** Only the writable part counts when deciding whether a replace is needed. */
function writableView(object: KubeObject): string {
  const { metadata, status: _status, ...rest } = object;
  const {
    resourceVersion: _rv,
    uid: _uid,
    generation: _gen,
    creationTimestamp: _ct,
    managedFields: _mf,
    ...meta
  } = metadata;
  const labels = meta.labels && Object.keys(meta.labels).length > 0 ? meta.labels : undefined;
  const annotations =
    meta.annotations && Object.keys(meta.annotations).length > 0 ? meta.annotations : undefined;
  const owners = meta.ownerReferences && meta.ownerReferences.length > 0 ? meta.ownerReferences : undefined;
  return canonicalJson({ ...rest, metadata: { ...meta, labels, annotations, ownerReferences: owners } });
}

export function sameWritableContent(a: KubeObject, b: KubeObject): boolean {
  return writableView(a) === writableView(b);
}

/** The one write that turns `observed` into `desired` (undefined = absent), or none. */
export function writeFor(
  observed: KubeObject | undefined,
  desired: KubeObject | undefined,
  reason: string,
  barrier?: Barrier,
): Write | undefined {
  const withBarrier = <W extends Write>(w: W): W => (barrier ? { ...w, barrier } : w);
  if (observed === undefined && desired === undefined) return undefined;
  if (observed === undefined && desired !== undefined) {
    const object = structuredClone(desired);
    delete object.metadata.resourceVersion;
    delete object.metadata.uid;
    delete object.metadata.creationTimestamp;
    return withBarrier({ op: 'create', object, reason });
  }
  if (observed !== undefined && desired === undefined) {
    const w: Write = { op: 'delete', ref: refOf(observed), reason };
    if (observed.metadata.uid !== undefined) w.uid = observed.metadata.uid;
    if (observed.metadata.resourceVersion !== undefined)
      w.resourceVersion = observed.metadata.resourceVersion;
    return withBarrier(w);
  }
  const o = observed as KubeObject;
  const d = desired as KubeObject;
  if (sameWritableContent(o, d)) return undefined;
  const object = structuredClone(d);
  const resourceVersion = o.metadata.resourceVersion ?? '';
  object.metadata.resourceVersion = resourceVersion;
  return withBarrier({ op: 'replace', object, resourceVersion, reason });
}

export function pushWrite(plan: Plan, write: Write | undefined): void {
  if (write !== undefined) plan.writes.push(write);
}

export function describeWrite(write: Write): string {
  const ref = write.op === 'delete' ? write.ref : refOf(write.object);
  return `${write.op} ${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}: ${write.reason}`;
}
