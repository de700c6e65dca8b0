/**
 * One coordination.k8s.io/v1 Lease per session: who holds it, what it routes, since when, and
 * until when it counts as alive (renewTime + leaseDurationSeconds). It is what `detour status`
 * lists, what conflict detection reads, and what the janitor trusts: a route whose Lease is gone
 * or expired belongs to nobody and is reverted.
 */
import { createHash } from 'node:crypto';
import { formatFilter } from '@detour/router/match/filter-expression';
import { filtersOverlap } from '@detour/router/match/filter-key';
import { canonicalJson } from './canonical.ts';
import { FilterHeldError } from './errors.ts';
import type { KubeObject } from './k8s-object.ts';
import { isKind } from './k8s-object.ts';
import type { LeaseRef, RouteFilter, SessionIntent, SessionMode } from './session-intent.ts';
import { routeName, sessionFilter } from './session-intent.ts';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, SESSION_LABEL } from './session-records.ts';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export type Lease = KubeObject<LeaseSpec>;

export const LEASE_ANNOTATIONS = {
  holder: 'detour.dev/holder',
  /** `host:port`; absent for egress-only sessions, which take no requests */
  target: 'detour.dev/target',
  /** JSON list of `host:port`, when the Lease routes several Services (a feature environment) */
  targets: 'detour.dev/targets',
  /** egress-only: `Kind/name` of the workload whose env the session runs with, when it names one */
  workload: 'detour.dev/workload',
  /** canonical JSON of the RouteFilter; absent for steal-all */
  filter: 'detour.dev/filter',
  mode: 'detour.dev/mode',
  /** the adapter that placed the routes (istio, istio-envoyfilter, gateway-api, service) */
  adapter: 'detour.dev/adapter',
  /** sha256 (hex) of the session's tunnel token: the agent admits a CLI whose token hashes to a live Lease's */
  tokenSha256: 'detour.dev/token-sha256',
  /**
   * Written by the agent replica that holds the session's tunnel (JSON: pod, address, what it
   * takes): the other replicas forward the session's requests there. Absent for egress-only sessions.
   */
  servedBy: 'detour.dev/served-by',
} as const;

/** What a Lease records of a session's tunnel token: its sha256, hex. */
export function tokenSha256(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Default: the CLI renews every 10 s; three missed renewals and the session is presumed dead. */
export const DEFAULT_LEASE_SECONDS = 30;

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function leaseName(sessionId: string): string {
  return routeName(sessionId);
}

/** A session that takes no requests: the Lease admits its tunnel and shows it in `detour status`. */
export const EGRESS_ONLY = 'egress-only';
export type LeaseMode = SessionMode['kind'] | typeof EGRESS_ONLY;

export interface LeaseOptions {
  durationSeconds?: number;
  adapter?: string;
  tokenSha256?: string;
}

export function buildLease(intent: SessionIntent, now: Date, options: LeaseOptions = {}): Lease {
  const filter = sessionFilter(intent.mode);
  const annotations: Record<string, string> = {
    [LEASE_ANNOTATIONS.target]: `${intent.target.host}:${intent.target.port}`,
  };
  if (filter !== undefined) annotations[LEASE_ANNOTATIONS.filter] = canonicalJson(filter);
  if (options.adapter !== undefined) annotations[LEASE_ANNOTATIONS.adapter] = options.adapter;
  return sessionLease(intent, intent.mode.kind, annotations, now, options);
}

/**
 * The Lease of an egress-only session: no target Service, no filter, no adapter, since nothing is
 * routed; `workload` names the target (`Deployment/orders`) when the session runs with its env.
 */
export function buildEgressOnlyLease(
  session: { sessionId: string; holder: string; lease: LeaseRef; workload?: string },
  now: Date,
  options: Omit<LeaseOptions, 'adapter'> = {},
): Lease {
  const annotations: Record<string, string> = {};
  if (session.workload !== undefined) annotations[LEASE_ANNOTATIONS.workload] = session.workload;
  return sessionLease(session, EGRESS_ONLY, annotations, now, options);
}

function sessionLease(
  session: { sessionId: string; holder: string; lease: LeaseRef },
  mode: LeaseMode,
  annotations: Record<string, string>,
  now: Date,
  options: LeaseOptions,
): Lease {
  const time = microTime(now);
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: session.lease.name,
      namespace: session.lease.namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [SESSION_LABEL]: session.sessionId },
      annotations: {
        [LEASE_ANNOTATIONS.holder]: session.holder,
        [LEASE_ANNOTATIONS.mode]: mode,
        ...annotations,
        ...(options.tokenSha256 !== undefined
          ? { [LEASE_ANNOTATIONS.tokenSha256]: options.tokenSha256 }
          : {}),
      },
    },
    spec: {
      holderIdentity: session.holder,
      leaseDurationSeconds: options.durationSeconds ?? DEFAULT_LEASE_SECONDS,
      acquireTime: time,
      renewTime: time,
      leaseTransitions: 0,
    },
  };
}

/** The Lease with renewTime moved to now (what the CLI writes while the tunnel lives). */
export function renewLease(lease: Lease, now: Date): Lease {
  const renewed = structuredClone(lease);
  renewed.spec = { ...renewed.spec, renewTime: microTime(now) };
  return renewed;
}

/** When the Lease stops counting as alive, or undefined when it says nothing usable. */
export function expiresAt(lease: Lease): Date | undefined {
  const last = lease.spec?.renewTime ?? lease.spec?.acquireTime ?? lease.metadata.creationTimestamp;
  const seconds = lease.spec?.leaseDurationSeconds;
  if (last === undefined || seconds === undefined) return undefined;
  const t = Date.parse(last);
  return Number.isNaN(t) ? undefined : new Date(t + seconds * 1000);
}

/**
 * Expired when renewTime + duration (+ grace, for clock skew between machines) is before `now`.
 * A Lease with no time or duration at all cannot prove it is alive: expired.
 */
export function isExpired(lease: Lease, now: Date, graceSeconds = 0): boolean {
  const at = expiresAt(lease);
  return at === undefined || at.getTime() + graceSeconds * 1000 < now.getTime();
}

export function leasesOf(objects: readonly KubeObject[]): Lease[] {
  return objects.filter((o) => isKind(o, 'coordination.k8s.io', 'Lease')) as Lease[];
}

export function isDetourLease(lease: Lease): boolean {
  return (
    lease.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE &&
    lease.metadata.labels?.[SESSION_LABEL] !== undefined
  );
}

export interface LeaseSummary {
  sessionId: string;
  holder: string;
  since: string;
  mode: LeaseMode;
  /** The Service whose requests the session takes; absent for egress-only sessions. */
  host?: string;
  port?: number;
  /** egress-only: the workload whose env the session runs with, when it names one. */
  workload?: string;
  filter?: RouteFilter;
}

export function summarizeLease(lease: Lease): LeaseSummary | undefined {
  const a = lease.metadata.annotations ?? {};
  const sessionId = lease.metadata.labels?.[SESSION_LABEL];
  const mode = (a[LEASE_ANNOTATIONS.mode] ?? 'steal') as LeaseMode;
  const target = a[LEASE_ANNOTATIONS.target];
  if (sessionId === undefined || (target === undefined && mode !== EGRESS_ONLY)) return undefined;
  const summary: LeaseSummary = {
    sessionId,
    holder: a[LEASE_ANNOTATIONS.holder] ?? lease.spec?.holderIdentity ?? 'unknown',
    since: lease.spec?.acquireTime ?? lease.metadata.creationTimestamp ?? 'unknown',
    mode,
  };
  if (target !== undefined) {
    const colon = target.lastIndexOf(':');
    summary.host = target.slice(0, colon);
    summary.port = Number(target.slice(colon + 1));
  }
  const workload = a[LEASE_ANNOTATIONS.workload];
  if (workload !== undefined) summary.workload = workload;
  const filter = a[LEASE_ANNOTATIONS.filter];
  if (filter !== undefined) {
    try {
      summary.filter = JSON.parse(filter) as RouteFilter;
    } catch {
      // An unreadable filter is treated as "takes everything" below: refusing is the safe side.
    }
  }
  return summary;
}

/** Every `host:port` a Lease routes: its `targets` list, else its one `target`. */
export function leaseTargets(lease: Lease): Array<{ host: string; port: number }> {
  const a = lease.metadata.annotations ?? {};
  let targets: unknown = [a[LEASE_ANNOTATIONS.target]];
  const list = a[LEASE_ANNOTATIONS.targets];
  try {
    if (list !== undefined) targets = JSON.parse(list);
  } catch {
    // An unreadable list: fall back to the one target.
  }
  return (Array.isArray(targets) ? targets : []).flatMap((target: unknown) => {
    if (typeof target !== 'string') return [];
    const colon = target.lastIndexOf(':');
    return colon < 0 ? [] : [{ host: target.slice(0, colon), port: Number(target.slice(colon + 1)) }];
  });
}

/**
 * What of `mine` another session already holds, or undefined. Two routes collide when one request
 * could match both (the router's conservative `filtersOverlap`: different exact values of one
 * header are disjoint; different headers are not, since a request may carry both), or when either
 * takes everything (steal-all).
 */
export function overlap(mine: RouteFilter | undefined, theirs: RouteFilter | undefined): string | undefined {
  if (theirs === undefined) return 'every request (their session is steal-all)';
  if (mine === undefined) return `requests matching ${formatFilter(theirs)} (steal-all takes every request)`;
  return filtersOverlap(mine, theirs)
    ? `${formatFilter(mine)} (overlaps ${formatFilter(theirs)})`
    : undefined;
}

/** Throws FilterHeldError when a live session of someone else routes an overlapping filter on the same host:port. */
export function checkFilterConflict(
  leases: readonly Lease[],
  intent: SessionIntent,
  now: Date,
  graceSeconds = 0,
): void {
  const mine = sessionFilter(intent.mode);
  for (const lease of leases) {
    if (!isDetourLease(lease) || isExpired(lease, now, graceSeconds)) continue;
    const other = summarizeLease(lease);
    // Egress-only sessions take no requests, so they hold nothing anyone could collide with.
    if (other === undefined || other.sessionId === intent.sessionId || other.mode === EGRESS_ONLY) continue;
    const { host, port } = intent.target;
    if (!leaseTargets(lease).some((t) => t.host === host && t.port === port)) continue;
    const what = overlap(mine, other.mode === 'steal-all' ? undefined : (other.filter ?? undefined));
    if (what !== undefined) {
      throw new FilterHeldError({
        host: intent.target.host,
        port: intent.target.port,
        what,
        holder: other.holder,
        since: other.since,
        sessionId: other.sessionId,
      });
    }
  }
}
