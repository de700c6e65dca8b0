import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TunnelConnection } from '@detour/router/tunnel/index';
import type { AgentTunnel, AgentTunnels } from './agent-tunnel.ts';

export interface ReplicaTunnelsOptions {
  /** The ready pods of the agent, by name. */
  readyPods: () => Promise<string[]>;
  /** A tunnel (not started) whose connections go to `pod`'s tunnel port. */
  tunnelTo: (pod: string) => AgentTunnel;
  /** `all`: a tunnel to every ready replica; `one`: to a single one. */
  replicas: 'all' | 'one';
  /** How often the ready pods are listed again (also at once when a tunnel drops). */
  intervalMs?: number;
}

/** How long the first start waits for the other replicas once one tunnel is up. */
const slowReplicaMs = 2_000;

interface ReplicaTunnelsEvents {
  /** A tunnel to a replica came up after start (a new replica, or one that replaced another). */
  added: [pod: string];
  /** The replica is gone (deleted, no longer ready): its tunnel was closed. */
  removed: [pod: string];
  /** Listing the ready pods, or a tunnel to `pod`, failed; the tunnels up are kept, and it is tried again. */
  failed: [Error, pod: string | undefined];
}

/**
 * The CLI's tunnels to the agent's replicas, kept level-triggered: the ready pods are listed every
 * few seconds and whenever a tunnel drops, a tunnel is opened to each wanted replica that has none
 * and closed for each replica that is gone. The mesh balances a session's requests over every
 * replica behind the agent Service; a replica that holds a tunnel of the session serves them
 * itself, with no hop to another replica. Each tunnel reconnects to its own pod by itself (a
 * broken port-forward); a pod that went away is replaced here.
 */
export class ReplicaTunnels extends EventEmitter<ReplicaTunnelsEvents> implements AgentTunnels {
  readonly #options: ReplicaTunnelsOptions;
  readonly #tunnels = new Map<string, AgentTunnel>();
  /** Replicas a tunnel is being opened to (not yet in #tunnels). */
  readonly #opening = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #reconciling = false;
  #again = false;
  #stopped = false;

  constructor(options: ReplicaTunnelsOptions) {
    super();
    this.#options = options;
  }

  get current(): TunnelConnection | undefined {
    for (const tunnel of this.#tunnels.values()) if (tunnel.current) return tunnel.current;
    return undefined;
  }

  connections(): TunnelConnection[] {
    return [...this.#tunnels.values()].flatMap((tunnel) => (tunnel.current ? [tunnel.current] : []));
  }

  /** The replicas with a tunnel up, by pod name. */
  get replicas(): string[] {
    return [...this.#tunnels].flatMap(([pod, tunnel]) => (tunnel.current ? [pod] : []));
  }

  /**
   * Opens the first tunnels: resolves once one is up and the others are too (or 2 s later, when
   * one is slow: it joins when it is up), fails with the first error when none comes up. Then
   * keeps the set current. The session's route is written after this, so with every replica
   * registered the mesh's first requests need no hop either.
   */
  async start(): Promise<TunnelConnection> {
    const wanted = this.#wanted(await this.#options.readyPods());
    const opened = wanted.map((pod) => this.#open(pod));
    let first: TunnelConnection;
    try {
      first = await Promise.any(opened);
    } catch (error) {
      throw (error as AggregateError).errors[0];
    }
    for (const [i, open] of opened.entries())
      open.catch((error: Error) => this.emit('failed', error, wanted[i]));
    await Promise.race([Promise.allSettled(opened), sleep(slowReplicaMs, undefined, { ref: false })]);
    this.#timer = setInterval(() => this.reconcile(), this.#options.intervalMs ?? 5_000);
    this.#timer.unref();
    return first;
  }

  /** Lists the ready pods and brings the tunnels in line (coalesced: one pass at a time). */
  reconcile(): void {
    if (this.#stopped) return;
    if (this.#reconciling) {
      this.#again = true;
      return;
    }
    this.#reconciling = true;
    void this.#reconcileOnce().finally(() => {
      this.#reconciling = false;
      if (this.#again) {
        this.#again = false;
        this.reconcile();
      }
    });
  }

  async #reconcileOnce(): Promise<void> {
    let ready: string[];
    try {
      ready = await this.#options.readyPods();
    } catch (error) {
      this.emit('failed', error as Error, undefined);
      return;
    }
    if (this.#stopped) return;
    for (const [pod, tunnel] of this.#tunnels) {
      if (ready.includes(pod)) continue;
      this.#tunnels.delete(pod);
      tunnel.stop();
      this.emit('removed', pod);
    }
    for (const pod of this.#wanted(ready)) {
      // A replica that refused is tried again on the next pass.
      this.#open(pod).then(
        () => this.emit('added', pod),
        (error: Error) => this.emit('failed', error, pod),
      );
    }
  }

  /** The replicas that should have a tunnel and have none yet. */
  #wanted(ready: readonly string[]): string[] {
    const missing = ready.filter((pod) => !this.#tunnels.has(pod) && !this.#opening.has(pod));
    if (this.#options.replicas === 'all') return missing;
    if (this.#tunnels.size > 0 || this.#opening.size > 0) return [];
    const pick = missing[Math.floor(Math.random() * missing.length)];
    return pick === undefined ? [] : [pick];
  }

  async #open(pod: string): Promise<TunnelConnection> {
    this.#opening.add(pod);
    const tunnel = this.#options.tunnelTo(pod);
    try {
      const connection = await tunnel.start();
      if (this.#stopped) {
        tunnel.stop();
        return connection;
      }
      this.#tunnels.set(pod, tunnel);
      tunnel.on('lost', () => this.reconcile());
      return connection;
    } catch (error) {
      tunnel.stop();
      throw error;
    } finally {
      this.#opening.delete(pod);
    }
  }

  retryNow(): void {
    for (const tunnel of this.#tunnels.values()) tunnel.retryNow();
    this.reconcile();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const tunnel of this.#tunnels.values()) tunnel.stop();
    this.#tunnels.clear();
  }
}
