import {
  type ClusterClient,
  isExpired,
  type Lease,
  type LeaseRef,
  leasesOf,
  renewLease,
  WriteConflictError,
} from '@detour/mesh-adapters';
import { DetourError } from '@detour/router/errors';
import type { Reporter } from '../reporter.ts';

/**
 * A renewal that did not keep the session whole: the Lease was renewed only after it had expired
 * (a janitor may have reverted the route meanwhile), or it is gone (ended by the agent or a
 * janitor: the route was reverted, and the agent admits no tunnel of this session).
 */
export interface LeaseInterruption {
  gone: boolean;
  /** Milliseconds from the last renewal that went through to the one that found this out. */
  sinceRenewalMs: number;
}

/**
 * A session's Lease while the session lives: created (which admits the CLI's tunnel at the agent
 * and shows the session in `detour status`), renewed every third of its duration, deleted at the
 * end. If this process dies it expires, and the agent or any detour's janitor cleans up after it.
 * If this process only stopped renewing for a while (a laptop asleep, offline), `onInterrupted`
 * hears of it once renewing works again; a Lease found gone is not renewed any more.
 */
export class SessionLease {
  readonly #client: ClusterClient;
  readonly #reporter: Reporter;
  readonly #onInterrupted: (interruption: LeaseInterruption) => void;
  #lease: Lease | undefined;
  #renewedAt = Date.now();
  readonly #renewTimer: NodeJS.Timeout;

  private constructor(
    client: ClusterClient,
    lease: Lease,
    reporter: Reporter,
    onInterrupted: (interruption: LeaseInterruption) => void,
  ) {
    this.#client = client;
    this.#lease = lease;
    this.#reporter = reporter;
    this.#onInterrupted = onInterrupted;
    const seconds = lease.spec?.leaseDurationSeconds ?? 30;
    this.#renewTimer = setInterval(() => void this.#renew(), (seconds * 1000) / 3);
    this.#renewTimer.unref();
  }

  static async create(
    client: ClusterClient,
    lease: Lease,
    reporter: Reporter,
    onInterrupted: (interruption: LeaseInterruption) => void = () => {},
  ): Promise<SessionLease> {
    const created = (await client.create(lease)) as Lease;
    reporter.step(
      'lease.created',
      `lease ${created.metadata.namespace}/${created.metadata.name} held for ${created.spec?.leaseDurationSeconds} s, renewed while this session lives`,
      { lease: created.metadata.name, uid: created.metadata.uid },
    );
    return new SessionLease(client, created, reporter, onInterrupted);
  }

  get uid(): string | undefined {
    return this.#lease?.metadata.uid;
  }

  /** Name, namespace and uid (what objects of the session are owned by); undefined once deleted. */
  get ref(): LeaseRef | undefined {
    const lease = this.#lease;
    return lease
      ? {
          name: lease.metadata.name,
          namespace: lease.metadata.namespace ?? '',
          uid: lease.metadata.uid ?? '',
        }
      : undefined;
  }

  /**
   * Renews on the Lease as last read; when someone else wrote it meanwhile (the agent replica that
   * holds the tunnel records itself on it), renews what is there now, keeping their annotations.
   */
  async #renew(): Promise<void> {
    if (!this.#lease) return;
    const late = isExpired(this.#lease, new Date());
    try {
      try {
        this.#lease = (await this.#client.replace(renewLease(this.#lease, new Date()))) as Lease;
      } catch (error) {
        if (!(error instanceof WriteConflictError)) throw error;
        const { name, namespace, uid } = this.#lease.metadata;
        const current = leasesOf(
          await this.#client.list({
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            resource: 'leases',
            namespace,
          }),
        ).find((lease) => lease.metadata.name === name && lease.metadata.uid === uid);
        if (!current) return this.#gone();
        this.#lease = (await this.#client.replace(renewLease(current, new Date()))) as Lease;
      }
      const sinceRenewalMs = Date.now() - this.#renewedAt;
      this.#renewedAt = Date.now();
      if (late) this.#onInterrupted({ gone: false, sinceRenewalMs });
    } catch (error) {
      const expired = isExpired(this.#lease, new Date());
      this.#reporter.warn(
        'lease.renew-failed',
        `could not renew the session lease (${(error as Error).message})${expired ? ': it has expired, so any detour may now revert this session' : '; retrying'}`,
      );
    }
  }

  /** Ended by someone else: nothing to renew or delete any more. */
  #gone(): void {
    clearInterval(this.#renewTimer);
    this.#lease = undefined;
    this.#onInterrupted({ gone: true, sinceRenewalMs: Date.now() - this.#renewedAt });
  }

  /** Stops renewing and deletes the Lease (preconditioned on its uid). Safe to call twice. */
  async delete(): Promise<void> {
    clearInterval(this.#renewTimer);
    const lease = this.#lease;
    if (!lease) return;
    this.#lease = undefined;
    await this.#client
      .delete(
        {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          name: lease.metadata.name,
          namespace: lease.metadata.namespace,
        },
        { uid: lease.metadata.uid },
      )
      .catch((error: Error) => {
        throw new DetourError(
          'DETOUR_LEASE_DELETE_FAILED',
          `could not delete lease ${lease.metadata.namespace}/${lease.metadata.name}: ${error.message}; it expires by itself`,
        );
      });
  }
}
