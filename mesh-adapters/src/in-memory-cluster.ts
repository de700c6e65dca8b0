/**
 * A model of the apiserver's write semantics that matter to planners: create fails if the name is
 * taken, replace and delete fail if their resourceVersion/uid precondition no longer holds. Used
 * to compose plans (the janitor reverts several sessions on one object), to show a dry run, and
 * by the tests to prove properties without a cluster.
 */
import { DetourError } from '@detour/router/errors';
import type { KubeObject, ObjectRef } from './k8s-object.ts';
import { describeRef, refOf, sameObject } from './k8s-object.ts';
import type { Plan, Write } from './plan.ts';

/** The write's precondition failed: re-read, re-plan, retry (what the apiserver's 409 means). */
export class WriteConflictError extends DetourError {
  readonly ref: ObjectRef;
  constructor(ref: ObjectRef, detail: string) {
    super('DETOUR_WRITE_CONFLICT', `${describeRef(ref)}: ${detail}; re-read the object and plan again.`);
    this.ref = ref;
  }
}

export class InMemoryCluster {
  #objects: KubeObject[];
  #nextVersion = 1;
  #nextUid = 1;

  constructor(objects: readonly KubeObject[] = []) {
    this.#objects = objects.map((o) => {
      const copy = structuredClone(o);
      copy.metadata.resourceVersion ??= String(this.#nextVersion++);
      copy.metadata.uid ??= `uid-${this.#nextUid++}`;
      return copy;
    });
  }

  /** A snapshot: callers may keep and mutate it without affecting the cluster. */
  list(): KubeObject[] {
    return structuredClone(this.#objects);
  }

  get(ref: ObjectRef): KubeObject | undefined {
    const found = this.#objects.find((o) => sameObject(refOf(o), ref));
    return found === undefined ? undefined : structuredClone(found);
  }

  apply(write: Write): void {
    const ref = write.op === 'delete' ? write.ref : refOf(write.object);
    const index = this.#objects.findIndex((o) => sameObject(refOf(o), ref));
    const current = index >= 0 ? this.#objects[index] : undefined;
    switch (write.op) {
      case 'create': {
        if (current !== undefined) throw new WriteConflictError(ref, 'already exists');
        const object = structuredClone(write.object);
        object.metadata.resourceVersion = String(this.#nextVersion++);
        object.metadata.uid = `uid-${this.#nextUid++}`;
        object.metadata.creationTimestamp ??= new Date(
          Date.UTC(2026, 0, 1, 0, 0, this.#nextUid),
        ).toISOString();
        this.#objects.push(object);
        return;
      }
      case 'replace': {
        if (current === undefined) throw new WriteConflictError(ref, 'not found');
        if (current.metadata.resourceVersion !== write.resourceVersion) {
          throw new WriteConflictError(
            ref,
            `resourceVersion is ${current.metadata.resourceVersion}, the write expected ${write.resourceVersion}`,
          );
        }
        const object = structuredClone(write.object);
        object.metadata.resourceVersion = String(this.#nextVersion++);
        object.metadata.uid = current.metadata.uid as string;
        object.metadata.creationTimestamp = current.metadata.creationTimestamp as string;
        this.#objects[index] = object;
        return;
      }
      case 'delete': {
        if (current === undefined) return; // already gone: deletes are idempotent
        if (write.uid !== undefined && current.metadata.uid !== write.uid) {
          throw new WriteConflictError(ref, 'was replaced by another object of the same name');
        }
        if (
          write.resourceVersion !== undefined &&
          current.metadata.resourceVersion !== write.resourceVersion
        ) {
          throw new WriteConflictError(ref, 'changed since it was read');
        }
        this.#objects.splice(index, 1);
        return;
      }
    }
  }

  /** Applies every write in order; stops at the first conflict (earlier writes stay, as on a real apiserver). */
  applyPlan(plan: Plan): void {
    for (const write of plan.writes) this.apply(write);
  }

  /** A write by someone other than detour: a human with kubectl, a controller. */
  edit(ref: ObjectRef, mutate: (object: KubeObject) => void): void {
    const index = this.#objects.findIndex((o) => sameObject(refOf(o), ref));
    const current = this.#objects[index];
    if (current === undefined) throw new WriteConflictError(ref, 'not found');
    const object = structuredClone(current);
    mutate(object);
    object.metadata.resourceVersion = String(this.#nextVersion++);
    this.#objects[index] = object;
  }
}

/** The objects after `plan`, as a pure function (for composing plans and for dry runs). */
export function simulate(objects: readonly KubeObject[], plan: Plan): KubeObject[] {
  const cluster = new InMemoryCluster(objects);
  cluster.applyPlan(plan);
  return cluster.list();
}
