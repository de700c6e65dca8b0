import { SESSION_LABEL } from '@detour/mesh-adapters/session-records';
import type { RequestMatcher } from '@detour/router/match/index';
import { compileFilter, validateFilter } from '@detour/router/match/index';
import { firstTaker, hostAliases, type InboundRequest } from '../session-registry.ts';
import { type ServedBy, servedByOf } from './served-by.ts';

/** A session whose tunnel another replica of this agent holds (the one recorded last: a holder that crashed never took itself off). */
export interface PeerSession {
  id: string;
  /** The holding replica's pod name. */
  pod: string;
  host: string;
  port: number;
  mode: Exclude<ServedBy['mode'], 'egress-only'>;
  matcher: RequestMatcher;
  hosts: ReadonlySet<string> | undefined;
}

/** The Lease fields the directory reads (a client-node V1Lease or a detour KubeObject alike). */
export interface LeaseView {
  metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

/**
 * The sessions other replicas hold, learnt from the `served-by` annotation of session Leases.
 * This replica is never a peer of its own: its SessionRegistry is the truth for the sessions it
 * holds, and a stale entry naming it (a tunnel that moved away) must not make it forward to itself.
 * Egress-only sessions take no requests and are left out.
 */
export class SessionDirectory {
  readonly #self: string;
  readonly #byLease = new Map<string, PeerSession>();

  constructor(self: string) {
    this.#self = self;
  }

  get size(): number {
    return this.#byLease.size;
  }

  /** A Lease was added or changed. */
  update(lease: LeaseView): void {
    const name = lease.metadata?.name;
    if (name === undefined) return;
    const served = servedByOf(lease.metadata?.annotations);
    const id = lease.metadata?.labels?.[SESSION_LABEL];
    const holder = served?.holders.findLast((candidate) => candidate.pod !== this.#self);
    if (!served || served.mode === 'egress-only' || !holder || id === undefined) {
      this.#byLease.delete(name);
      return;
    }
    let matcher: RequestMatcher;
    try {
      matcher = compileFilter(validateFilter(served.filter, 'filter', { allowMatchAll: true }));
    } catch {
      this.#byLease.delete(name);
      return;
    }
    const at = holder.address.lastIndexOf(':');
    this.#byLease.set(name, {
      id,
      pod: holder.pod,
      host: holder.address.slice(0, at).replace(/^\[(.*)\]$/, '$1'),
      port: Number(holder.address.slice(at + 1)),
      mode: served.mode,
      matcher,
      hosts: served.targetHost === undefined ? undefined : hostAliases(served.targetHost),
    });
  }

  remove(leaseName: string): void {
    this.#byLease.delete(leaseName);
  }

  /** Whether another replica holds a tunnel of the session. */
  heldElsewhere(sessionId: string): boolean {
    for (const peer of this.#byLease.values()) if (peer.id === sessionId) return true;
    return false;
  }

  /** The peer session that takes the request, the same way a local session would. */
  match(request: InboundRequest): PeerSession | undefined {
    return firstTaker(this.#byLease.values(), request, () => true);
  }
}
