/**
 * A feature environment against a cluster: its Lease first (refusing what another live Lease
 * holds), then each Service's subset and route through the adapter the mesh detection chose,
 * make-before-break; removal reverts every route of the environment, then its subsets, then ends
 * the Lease. Running `up` again renews the Lease (a new TTL) and re-plans, which is empty when
 * everything is still in place.
 */
import type { MeshAdapter } from './adapter.ts';
import { QUERIES } from './adapter.ts';
import { type ApplyOptions, applySession, type ClusterClient, observe, reconcile } from './applier.ts';
import { InvalidIntentError } from './errors.ts';
import type { FeatureEnvironment } from './feature-env.ts';
import {
  buildFeatureLease,
  checkFeatureConflict,
  featureIntents,
  featureSessionId,
  summarizeFeature,
} from './feature-env.ts';
import { planSubsetRevert } from './istio-virtualservice/destination-rule.ts';
import { isKind, type KubeObject } from './k8s-object.ts';
import type { Lease } from './lease.ts';
import { leaseName, leasesOf } from './lease.ts';
import type { Write } from './plan.ts';
import type { AgentService } from './session-intent.ts';
import { validateIntent } from './session-intent.ts';

export interface FeatureApplyOptions extends ApplyOptions {
  ttlSeconds: number;
  now: Date;
  agent: AgentService;
  /** The adapter for each Service host (istio or istio-envoyfilter, as detected). */
  adapterFor: (host: string) => MeshAdapter;
  /** Put on the Lease: the agent admits a tunnel whose token hashes to it (for the route probe). */
  tokenSha256?: string;
}

export interface FeatureApplyResult {
  lease: Lease;
  renewed: boolean;
  applied: Write[];
  warnings: string[];
}

async function environmentLease(
  client: ClusterClient,
  namespace: string,
  name: string,
): Promise<{ leases: Lease[]; mine: Lease | undefined }> {
  const leases = leasesOf(await client.list({ ...QUERIES.leases, namespace }));
  const mine = leases.find((l) => l.metadata.name === leaseName(featureSessionId(name)));
  return { leases, mine };
}

export async function applyFeatureEnvironment(
  client: ClusterClient,
  env: FeatureEnvironment,
  options: FeatureApplyOptions,
): Promise<FeatureApplyResult> {
  // Every intent is validated before anything is written: bad input leaves the cluster untouched.
  for (const intent of featureIntents(env, options.agent)) validateIntent(intent);
  const { leases, mine } = await environmentLease(client, env.namespace, env.name);
  checkFeatureConflict(leases, env, options.now);
  if (mine !== undefined) checkSameServices(mine, env, options.now);
  const desired = buildFeatureLease(env, options.now, {
    ttlSeconds: options.ttlSeconds,
    adapter: [...new Set(env.services.map((s) => options.adapterFor(s.host).kind))].join(','),
    ...(options.tokenSha256 ? { tokenSha256: options.tokenSha256 } : {}),
    ...(mine ? { previous: mine } : {}),
  });
  const lease = (mine ? await client.replace(desired) : await client.create(desired)) as Lease;
  const applied: Write[] = [];
  const warnings: string[] = [];
  for (const intent of featureIntents(env, options.agent, lease.metadata.uid)) {
    const result = await applySession(client, options.adapterFor(intent.target.host), intent, options);
    applied.push(...result.applied);
    warnings.push(...result.warnings);
  }
  return { lease, renewed: mine !== undefined, applied, warnings };
}

/**
 * A renewal may add Services but not drop one or change its workload: the subset of a Service
 * is shared by name, so a changed workload would need the old route gone first.
 */
function checkSameServices(lease: Lease, env: FeatureEnvironment, now: Date): void {
  const before = summarizeFeature(lease, now)?.services ?? [];
  for (const old of before) {
    const now_ = env.services.find((s) => s.host === old.host && s.port === old.port);
    if (now_ === undefined || now_.workload !== old.workload) {
      throw new InvalidIntentError(
        'workload',
        `feature environment ${env.name} routes ${old.service}:${old.port} to ${old.workload}, and this \`detour feature up\` ${now_ ? `names ${now_.workload}` : `leaves ${old.service} out`}`,
        `Keep --workload ${old.service}=${old.workload.replace(/^Deployment\//, 'deploy/')} to renew it, or run \`detour feature down ${env.name} -n ${env.namespace}\` first`,
      );
    }
  }
}

export interface FeatureRemoveResult {
  /** Whether there was anything of the environment (a Lease or routes) to remove. */
  found: boolean;
  applied: Write[];
}

/**
 * Reverts environment `name`: every adapter's routes first (DestinationRules held back), then,
 * once that has propagated, its subsets; then deletes its Lease. Break before unmake, whichever
 * adapter placed the routes.
 */
export async function removeFeatureEnvironment(
  client: ClusterClient,
  namespace: string,
  name: string,
  adapters: readonly MeshAdapter[],
  options: ApplyOptions = {},
): Promise<FeatureRemoveResult> {
  const sessionId = featureSessionId(name);
  const applied: Write[] = [];
  const isRule = (o: KubeObject) => isKind(o, 'networking.istio.io', 'DestinationRule');
  for (const adapter of adapters) {
    const result = await reconcile(
      client,
      `removing the routes of feature environment ${name} (${adapter.kind})`,
      async () => (await observe(client, adapter.revertQueries())).filter((o) => !isRule(o)),
      (observed) => adapter.planRevert(observed, sessionId),
      options,
    );
    applied.push(...result.applied);
  }
  const lastRoute = applied.at(-1);
  if (lastRoute !== undefined) await options.waitForPropagation?.(lastRoute);
  const subsets = await reconcile(
    client,
    `removing the subsets of feature environment ${name}`,
    () => observe(client, [QUERIES.destinationRules]),
    (observed) => ({ writes: planSubsetRevert(observed, sessionId), warnings: [] }),
    options,
  );
  applied.push(...subsets.applied);
  const { mine } = await environmentLease(client, namespace, name);
  if (mine !== undefined) {
    const ref = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace, name: mine.metadata.name };
    const preconditions = mine.metadata.uid ? { uid: mine.metadata.uid } : {};
    await client.delete(ref, preconditions);
    applied.push({ op: 'delete', ref, reason: `feature environment ${name} removed`, ...preconditions });
  }
  return { found: mine !== undefined || applied.length > 0, applied };
}
