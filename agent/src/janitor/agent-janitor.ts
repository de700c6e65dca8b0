import {
  allAdapters,
  type ClusterClient,
  type KubeObject,
  namespacedClient,
  runJanitor,
} from '@detour/mesh-adapters';
import type { Log } from '../log.ts';
import { servedByOf } from '../peers/served-by.ts';

export interface SessionLease {
  name: string;
  namespace: string;
}

export interface AgentJanitorOptions {
  client: ClusterClient;
  /** The agent's namespace: its Role allows cleaning there, and only there. */
  namespace: string;
  /** How long a session whose tunnel dropped may take to come back before its lease is ended. */
  graceMs: number;
  /** How often expired leases are looked for, whoever's they are. */
  intervalMs: number;
  log: Log;
  /** Whether a session is registered again (its CLI reconnected). */
  isLive: (sessionId: string) => boolean;
  /** This replica's pod name: a session whose Lease names another replica as a holder is served there. */
  self?: string;
}

/**
 * The agent's share of crash safety. When a CLI's tunnel drops, its session does not come back
 * within the grace period and no other replica holds it, the agent ends that session's Lease (preconditioned on the Lease it
 * read, so a CLI that renewed it meanwhile wins) and reverts its routes at once, instead of
 * waiting for the Lease to expire. It also runs the janitor periodically for any expired Lease.
 */
export class AgentJanitor {
  readonly #options: AgentJanitorOptions;
  readonly #client: ClusterClient;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #running = new Set<Promise<void>>();
  #interval: NodeJS.Timeout | undefined;

  constructor(options: AgentJanitorOptions) {
    this.#options = options;
    this.#client = namespacedClient(options.client, options.namespace);
  }

  start(): void {
    this.#interval = setInterval(() => this.#track(this.sweep('interval')), this.#options.intervalMs);
    this.#interval.unref();
  }

  /**
   * Stops the timers and waits for the work under way: an agent owned by the Lease it just ended
   * (an ephemeral one) is deleted by the garbage collector right then, and its routes must still go.
   */
  async stop(): Promise<void> {
    clearInterval(this.#interval);
    for (const timer of this.#timers) clearTimeout(timer);
    await Promise.all(this.#running);
  }

  #track(work: Promise<void>): void {
    this.#running.add(work);
    void work.finally(() => this.#running.delete(work));
  }

  /** A session's tunnel dropped: give it `graceMs` to come back, then end it. */
  sessionLost(sessionId: string, lease: SessionLease): void {
    if (lease.namespace !== this.#options.namespace) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#options.isLive(sessionId)) return;
      this.#track(this.#endSession(sessionId, lease));
    }, this.#options.graceMs);
    this.#timers.add(timer);
  }

  async #endSession(sessionId: string, lease: SessionLease): Promise<void> {
    const { log } = this.#options;
    try {
      const found = (
        await this.#client.list({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', resource: 'leases' })
      ).find((object: KubeObject) => object.metadata.name === lease.name);
      const elsewhere = servedByOf(found?.metadata.annotations)
        ?.holders.map((holder) => holder.pod)
        .filter((pod) => pod !== this.#options.self);
      if (found && elsewhere && elsewhere.length > 0) {
        log.info('janitor.session-held-elsewhere', { session: sessionId, holders: elsewhere });
        return;
      }
      if (found) {
        await this.#client.delete(
          {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            namespace: lease.namespace,
            name: lease.name,
          },
          { uid: found.metadata.uid, resourceVersion: found.metadata.resourceVersion },
        );
        log.info('janitor.lease-ended', {
          session: sessionId,
          lease: `${lease.namespace}/${lease.name}`,
          graceMs: this.#options.graceMs,
        });
      }
    } catch (error) {
      log.warn('janitor.lease-end-failed', { session: sessionId, reason: (error as Error).message });
      return;
    }
    await this.sweep(`session ${sessionId} lost its tunnel`);
  }

  /** Reverts every session in the namespace whose Lease is gone or expired. */
  async sweep(why: string): Promise<void> {
    try {
      const result = await runJanitor(this.#client, allAdapters(), () => new Date());
      for (const dead of result.dead)
        this.#options.log.info('janitor.reverted', { trigger: why, ...dead, writes: result.applied.length });
    } catch (error) {
      this.#options.log.warn('janitor.failed', { why, reason: (error as Error).message });
    }
  }
}
