import { setTimeout as sleep } from 'node:timers/promises';
import { type ClusterClient, type KubeObject, refOf } from '@detour/mesh-adapters';
import { DetourError } from '@detour/router/errors';
import { isPodReady, listPods, podProblem } from '../install/installer.ts';
import type { Reporter } from '../reporter.ts';

/**
 * A session's own agent (`--agent ephemeral`): its objects created once the session's Lease exists
 * (they are owned by it, so garbage collection removes them if everything else fails), the pod
 * waited for until ready, and everything deleted when the session ends.
 */
export class EphemeralAgent {
  readonly #client: ClusterClient;
  readonly #objects: readonly KubeObject[];
  readonly #reporter: Reporter;
  readonly #created: KubeObject[] = [];

  constructor(client: ClusterClient, objects: readonly KubeObject[], reporter: Reporter) {
    this.#client = client;
    this.#objects = objects;
    this.#reporter = reporter;
  }

  get #pod(): KubeObject {
    const pod = this.#objects.find((o) => o.kind === 'Pod');
    if (!pod) throw new Error('an ephemeral agent without a Pod');
    return pod;
  }

  /**
   * Creates the agent and resolves with the milliseconds from the first create to the pod's
   * readiness; `signal` (the session stopping) ends the wait, with what was created left to stop().
   */
  async start(timeoutMs: number, signal?: AbortSignal): Promise<number> {
    const began = Date.now();
    const pod = this.#pod;
    const namespace = pod.metadata.namespace ?? '';
    for (const object of this.#objects) {
      this.#created.push(await this.#client.create(object));
    }
    this.#reporter.step(
      'agent.ephemeral.created',
      `started ephemeral agent ${namespace}/${pod.metadata.name} (${this.#objects.map((o) => o.kind).join(', ')}, owned by the session's Lease)`,
    );
    let last = '';
    for (;;) {
      const found = (await listPods(this.#client, namespace, pod.metadata.labels ?? {})).find(
        (candidate) => candidate.metadata.name === pod.metadata.name,
      );
      if (found && isPodReady(found)) {
        const ms = Date.now() - began;
        this.#reporter.step(
          'agent.ephemeral.ready',
          `ephemeral agent ${namespace}/${pod.metadata.name} ready in ${(ms / 1000).toFixed(1)} s`,
          { ms },
        );
        return ms;
      }
      const problem = found ? podProblem(found) : { text: `${pod.metadata.name}: not created yet` };
      if (problem.text !== last) {
        this.#reporter.step('agent.ephemeral.waiting', `waiting for the ephemeral agent: ${problem.text}`);
        last = problem.text;
      }
      const fix = `see kubectl describe pod -n ${namespace} ${pod.metadata.name}; pass the image with --agent-image REF`;
      if (problem.hopeless)
        throw new DetourError(
          'DETOUR_EPHEMERAL_AGENT',
          `the ephemeral agent cannot start: ${problem.text}; ${fix}`,
        );
      if (Date.now() - began > timeoutMs)
        throw new DetourError(
          'DETOUR_EPHEMERAL_AGENT',
          `the ephemeral agent was not ready within ${Math.round(timeoutMs / 1000)} s (${problem.text}); ${fix}`,
        );
      await sleep(200, undefined, { signal }).catch(() => {});
      if (signal?.aborted)
        throw new DetourError('DETOUR_EPHEMERAL_AGENT', 'stopped while waiting for the ephemeral agent');
    }
  }

  /**
   * Resolves once the pod is gone: deleted by stop(), or by the garbage collector after its Lease
   * ended. Only then can an agent of the same name start again.
   */
  async waitGone(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const pod = this.#pod;
    const namespace = pod.metadata.namespace ?? '';
    for (
      const began = Date.now();
      !signal?.aborted;
      await sleep(200, undefined, { signal }).catch(() => {})
    ) {
      const pods = await listPods(this.#client, namespace, pod.metadata.labels ?? {});
      if (!pods.some((candidate) => candidate.metadata.name === pod.metadata.name)) return;
      if (Date.now() - began > timeoutMs)
        throw new DetourError(
          'DETOUR_EPHEMERAL_AGENT',
          `the ephemeral agent ${namespace}/${pod.metadata.name} was still terminating after ${Math.round(timeoutMs / 1000)} s; see kubectl describe pod -n ${namespace} ${pod.metadata.name}`,
        );
    }
  }

  /** Deletes what start created, the pod first (the Lease's garbage collection would, later). */
  async stop(): Promise<void> {
    const created = this.#created.splice(0).reverse();
    const pod = created.findIndex((o) => o.kind === 'Pod');
    if (pod > 0) created.unshift(...created.splice(pod, 1));
    for (const object of created) {
      await this.#client
        .delete(refOf(object), { uid: object.metadata.uid })
        .catch((error: Error) =>
          this.#reporter.warn(
            'agent.ephemeral.delete-failed',
            `could not delete ${object.kind} ${object.metadata.namespace}/${object.metadata.name} (${error.message}); the garbage collector removes it with the session's Lease`,
          ),
        );
    }
    if (created.length > 0)
      this.#reporter.step('agent.ephemeral.removed', `ephemeral agent ${this.#pod.metadata.name} removed`);
  }
}
