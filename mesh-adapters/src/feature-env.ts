/**
 * Feature environments: a named header value plus, per Service, the workload that serves it. Each
 * Service becomes one feature-env intent of the same session id (one route per VirtualService or
 * EnvoyFilter, one subset per DestinationRule, all reverted together by that id), and one Lease
 * with a TTL holds them all: it is what `detour feature list` shows, what refuses a second
 * environment on the same header, and what the janitor trusts (an expired environment is reverted
 * like any dead session).
 */
import { canonicalJson } from './canonical.ts';
import { FilterHeldError } from './errors.ts';
import type { Lease } from './lease.ts';
import {
  buildLease,
  expiresAt,
  isDetourLease,
  isExpired,
  LEASE_ANNOTATIONS,
  leaseName,
  leaseTargets,
  overlap,
  summarizeLease,
} from './lease.ts';
import type { AgentService, RouteFilter, SessionIntent } from './session-intent.ts';

/** On a feature environment's Lease: its name. */
export const FEATURE_LABEL = 'detour.dev/feature';
/** On a feature environment's Lease: canonical JSON of its services (FeatureService[]). */
export const FEATURE_SERVICES_ANNOTATION = 'detour.dev/feature-services';
/**
 * Set on responses by the environment's routes: `<subset> upstream=<pod address>`, so a probe can
 * tell that its request took the environment's route and which pod answered it.
 */
export const FEATURE_RESPONSE_HEADER = 'x-detour-feature';

export interface FeatureService {
  /** The Service's name, in the environment's namespace. */
  service: string;
  /** Its FQDN. */
  host: string;
  port: number;
  /** `Deployment/payments-v2`: what serves the environment's requests for this Service. */
  workload: string;
  /** The workload's selector: the subset's labels. */
  labels: Record<string, string>;
}

export interface FeatureEnvironment {
  name: string;
  namespace: string;
  filter: RouteFilter;
  holder: string;
  services: FeatureService[];
}

/** The session id (and subset name) of environment `name`: `feature-<name>`. */
export function featureSessionId(name: string): string {
  return `feature-${name}`;
}

/** The value the routes set on responses; Envoy replaces %UPSTREAM_REMOTE_ADDRESS% with the pod's. */
export function featureResponseValue(subset: string): string {
  return `${subset} upstream=%UPSTREAM_REMOTE_ADDRESS%`;
}

/** The subset and the answering pod's `ip:port` from a response header, if it is one of ours. */
export function parseFeatureResponse(
  value: string | undefined,
): { subset: string; upstream: string } | undefined {
  const match = /^(\S+) upstream=(\S+)$/.exec(value ?? '');
  return match ? { subset: match[1] as string, upstream: match[2] as string } : undefined;
}

/** One feature-env intent per Service, all of the environment's session id and Lease. */
export function featureIntents(
  env: FeatureEnvironment,
  agent: AgentService,
  leaseUid?: string,
): SessionIntent[] {
  const sessionId = featureSessionId(env.name);
  return env.services.map((service) => ({
    sessionId,
    target: { namespace: env.namespace, host: service.host, port: service.port },
    mode: { kind: 'feature-env', filter: env.filter, subset: { name: sessionId, labels: service.labels } },
    agent,
    holder: env.holder,
    lease: { name: leaseName(sessionId), namespace: env.namespace, ...(leaseUid ? { uid: leaseUid } : {}) },
  }));
}

/**
 * The environment's Lease, valid for `ttlSeconds` from `now`. Given the Lease it replaces (a
 * renewal), it keeps that one's identity, holder and acquire time.
 */
export function buildFeatureLease(
  env: FeatureEnvironment,
  now: Date,
  options: { ttlSeconds: number; adapter: string; tokenSha256?: string; previous?: Lease },
): Lease {
  const [first] = featureIntents(env, { name: 'unused', namespace: env.namespace, port: 1 });
  if (first === undefined) throw new Error('a feature environment needs at least one service');
  const lease = buildLease(first, now, {
    durationSeconds: options.ttlSeconds,
    adapter: options.adapter,
    ...(options.tokenSha256 ? { tokenSha256: options.tokenSha256 } : {}),
  });
  lease.metadata.labels = { ...lease.metadata.labels, [FEATURE_LABEL]: env.name };
  const annotations = lease.metadata.annotations ?? {};
  annotations[LEASE_ANNOTATIONS.targets] = canonicalJson(env.services.map((s) => `${s.host}:${s.port}`));
  annotations[FEATURE_SERVICES_ANNOTATION] = canonicalJson(env.services);
  const previous = options.previous;
  if (previous !== undefined) {
    lease.metadata.resourceVersion = previous.metadata.resourceVersion ?? '';
    const holder = previous.spec?.holderIdentity;
    if (holder !== undefined) {
      annotations[LEASE_ANNOTATIONS.holder] = holder;
      lease.spec = { ...lease.spec, holderIdentity: holder };
    }
    if (previous.spec?.acquireTime !== undefined)
      lease.spec = { ...lease.spec, acquireTime: previous.spec.acquireTime };
  }
  lease.metadata.annotations = annotations;
  return lease;
}

export interface FeatureSummary {
  name: string;
  namespace: string;
  holder: string;
  since: string;
  expiresAt: string | undefined;
  alive: boolean;
  filter?: RouteFilter;
  services: FeatureService[];
}

export function isFeatureLease(lease: Lease): boolean {
  return isDetourLease(lease) && lease.metadata.labels?.[FEATURE_LABEL] !== undefined;
}

export function summarizeFeature(lease: Lease, now: Date): FeatureSummary | undefined {
  const name = lease.metadata.labels?.[FEATURE_LABEL];
  const summary = summarizeLease(lease);
  if (name === undefined || summary === undefined) return undefined;
  let services: FeatureService[] = [];
  try {
    services = JSON.parse(lease.metadata.annotations?.[FEATURE_SERVICES_ANNOTATION] ?? '[]');
  } catch {
    // A hand-edited annotation: the environment is still listed, without its services.
  }
  const result: FeatureSummary = {
    name,
    namespace: lease.metadata.namespace ?? '',
    holder: summary.holder,
    since: summary.since,
    expiresAt: expiresAt(lease)?.toISOString(),
    alive: !isExpired(lease, now),
    services,
  };
  if (summary.filter !== undefined) result.filter = summary.filter;
  return result;
}

/**
 * Throws FilterHeldError naming the holder when a live Lease takes what `env` would: another
 * feature environment with an overlapping header (whatever its Services), or a session routing an
 * overlapping filter on one of env's Services. A session on another Service with the same header
 * is how a developer joins the environment, so it is no conflict.
 */
export function checkFeatureConflict(leases: readonly Lease[], env: FeatureEnvironment, now: Date): void {
  const mine = featureSessionId(env.name);
  for (const lease of leases) {
    if (!isDetourLease(lease) || isExpired(lease, now)) continue;
    const other = summarizeLease(lease);
    if (other === undefined || other.sessionId === mine) continue;
    const theirs = other.mode === 'steal-all' ? undefined : other.filter;
    const targets = leaseTargets(lease);
    const shared = isFeatureLease(lease)
      ? targets[0]
      : targets.find((t) => env.services.some((s) => s.host === t.host && s.port === t.port));
    if (shared === undefined) continue;
    const what = overlap(env.filter, theirs);
    if (what !== undefined) {
      throw new FilterHeldError({
        ...shared,
        what,
        holder: other.holder,
        since: other.since,
        sessionId: other.sessionId,
      });
    }
  }
}
