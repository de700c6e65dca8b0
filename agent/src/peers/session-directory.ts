import { SESSION_LABEL } from '@detour/mesh-adapters/session-records';
import type { RequestMatcher } from '@detour/router/match/index';
import { compileFilter, validateFilter } from '@detour/router/match/index';
import { firstTaker, hostAliases, type InboundRequest } from '../session-registry.ts';
import { type ServedBy, servedByOf } from './served-by.ts';

/** A session whose tunnel another replica of this agent holds. */
export interface PeerSession {
  id: string;
  /** The holding replica's pod name. */
  pod: string;
  host: string;
  port: number;
  mode: ServedBy['mode'];
  matcher: RequestMatcher;
  hosts: ReadonlySet<string> | undefined;
}

/** The Lease fields the directory reads (a client-node V1Lease or a detour KubeObject alike). */
export interface LeaseView {
  metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

/**
 * The sessions other replicas hold, learnt from the `served-by` annotation of session Leases.
 * Leases this replica serves are left out: its own SessionRegistry is the truth for them, and a
 * stale annotation naming it (a session that moved away) must not make it forward to itself.
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
    if (!served || id === undefined || served.pod === this.#self) {
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
    const at = served.address.lastIndexOf(':');
    this.#byLease.set(name, {
      id,
      pod: served.pod,
      host: served.address.slice(0, at).replace(/^\[(.*)\]$/, '$1'),
      port: Number(served.address.slice(at + 1)),
      mode: served.mode,
      matcher,
      hosts: served.targetHost === undefined ? undefined : hostAliases(served.targetHost),
    });
  }

  remove(leaseName: string): void {
    this.#byLease.delete(leaseName);
  }

  /** The peer session that takes the request, the same way a local session would. */
  match(request: InboundRequest): PeerSession | undefined {
    return firstTaker(this.#byLease.values(), request, () => true);
  }
}
