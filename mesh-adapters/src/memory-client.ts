/**
 * A ClusterClient over the in-memory model: dry runs, and tests of the applier without a cluster.
 * `beforeWrite` lets a test play "someone else wrote first" at exactly the wrong moment.
 */
import type { ListQuery } from './adapter.ts';
import type { ClusterClient } from './applier.ts';
import type { InMemoryCluster } from './in-memory-cluster.ts';
import type { KubeObject, ObjectRef } from './k8s-object.ts';
import { groupOf, refOf } from './k8s-object.ts';
import type { Write } from './plan.ts';

export function memoryClient(
  cluster: InMemoryCluster,
  hooks: { beforeWrite?: (write: Write) => void } = {},
): ClusterClient {
  const write = (w: Write) => {
    hooks.beforeWrite?.(w);
    cluster.apply(w);
  };
  const current = (ref: ObjectRef): KubeObject => {
    const found = cluster.get(ref);
    if (found === undefined) throw new Error(`${ref.kind} ${ref.name} vanished after its write`);
    return found;
  };
  return {
    async list(query: ListQuery) {
      return cluster
        .list()
        .filter(
          (o) =>
            o.kind === query.kind &&
            groupOf(o.apiVersion) === groupOf(query.apiVersion) &&
            (query.namespace === undefined || o.metadata.namespace === query.namespace),
        );
    },
    async create(object) {
      write({ op: 'create', object, reason: 'create' });
      return current(refOf(object));
    },
    async replace(object) {
      write({
        op: 'replace',
        object,
        resourceVersion: object.metadata.resourceVersion ?? '',
        reason: 'replace',
      });
      return current(refOf(object));
    },
    async delete(ref, preconditions) {
      write({ op: 'delete', ref, ...preconditions, reason: 'delete' });
    },
  };
}
