/**
 * The applier: the loop a Kubernetes controller runs, for one session. List what the adapter
 * needs, plan, apply the writes in order with their preconditions; on a conflict (someone wrote the
 * object since it was read) list again and re-plan — the plan depends only on what is there, so
 * re-planning continues from wherever the previous attempt stopped. Bounded in attempts and time.
 */
import { DetourError } from '@detour/router/errors';
import type { ListQuery, MeshAdapter, ObservedObjects } from './adapter.ts';
import { PermissionDeniedError } from './errors.ts';
import { WriteConflictError } from './in-memory-cluster.ts';
import type { DeadSession } from './janitor-plan.ts';
import { planJanitor } from './janitor-plan.ts';
import type { KubeObject, ObjectRef } from './k8s-object.ts';
import type { Plan, Write } from './plan.ts';

/** What the applier needs from a cluster; `kube-client.ts` implements it over the apiserver's REST API. */
export interface ClusterClient {
  list(query: ListQuery): Promise<KubeObject[]>;
  /** Throws WriteConflictError when the name is taken. */
  create(object: KubeObject): Promise<KubeObject>;
  /** Throws WriteConflictError when `object.metadata.resourceVersion` is not the current one, or the object is gone. */
  replace(object: KubeObject): Promise<KubeObject>;
  /** Succeeds when already gone; throws WriteConflictError when a precondition fails. */
  delete(ref: ObjectRef, preconditions: { uid?: string; resourceVersion?: string }): Promise<void>;
}

/**
 * The same client, listing in one namespace only: for an identity whose Role is namespaced (the
 * agent) and for cleaning one namespace (`detour clean -n`).
 */
export function namespacedClient(client: ClusterClient, namespace: string): ClusterClient {
  return { ...client, list: (query) => client.list({ ...query, namespace }) };
}

export class ApplyGaveUpError extends DetourError {
  readonly attempts: number;
  constructor(what: string, attempts: number, last: unknown) {
    super(
      'DETOUR_APPLY_GAVE_UP',
      `${what}: still conflicting after ${attempts} attempts (others keep writing the same objects). ` +
        'Run the command again; if it persists, look for a controller that rewrites the object (GitOps) and use --mesh istio-envoyfilter.',
      { cause: last },
    );
    this.attempts = attempts;
  }
}

export interface ApplyOptions {
  /** Default 12. */
  maxAttempts?: number;
  /** Backoff before attempt n: base × 2^(n−2), capped at 2 s, with jitter. Default 50 ms. */
  backoffMs?: number;
  /** Called after a write that carries a barrier; resolves when the mesh has the write in effect. */
  waitForPropagation?: (write: Write) => Promise<void>;
  /** Source of jitter (tests pass a seeded one). */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface ApplyResult {
  attempts: number;
  /** Writes that succeeded, in order. */
  applied: Write[];
  warnings: string[];
}

export async function applyWrite(client: ClusterClient, write: Write): Promise<void> {
  switch (write.op) {
    case 'create':
      await client.create(write.object);
      return;
    case 'replace':
      await client.replace(write.object);
      return;
    case 'delete': {
      const preconditions: { uid?: string; resourceVersion?: string } = {};
      if (write.uid !== undefined) preconditions.uid = write.uid;
      if (write.resourceVersion !== undefined) preconditions.resourceVersion = write.resourceVersion;
      await client.delete(write.ref, preconditions);
      return;
    }
  }
}

export async function observe(client: ClusterClient, queries: readonly ListQuery[]): Promise<KubeObject[]> {
  const lists = await Promise.all(queries.map((q) => client.list(q)));
  return lists.flat();
}

/** Plan-and-apply until a plan comes out empty (the desired state holds) or attempts run out. */
export async function reconcile(
  client: ClusterClient,
  what: string,
  read: () => Promise<ObservedObjects>,
  planner: (observed: ObservedObjects) => Plan,
  options: ApplyOptions = {},
): Promise<ApplyResult> {
  const maxAttempts = options.maxAttempts ?? 12;
  const base = options.backoffMs ?? 50;
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const applied: Write[] = [];
  const warnings = new Set<string>();
  let last: unknown;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (attempt > 1) await sleep(Math.min(2000, base * 2 ** (attempt - 2)) * (0.5 + random()));
    const plan = planner(await read());
    for (const w of plan.warnings) warnings.add(w);
    if (plan.writes.length === 0) return { attempts: attempt, applied, warnings: [...warnings] };
    try {
      for (const write of plan.writes) {
        await applyWrite(client, write);
        applied.push(write);
        if (write.barrier !== undefined) await options.waitForPropagation?.(write);
      }
    } catch (error) {
      if (!(error instanceof WriteConflictError)) throw error;
      last = error;
    }
    // Every write went through; loop once more to confirm the plan is now empty (level-triggered).
  }
  throw new ApplyGaveUpError(what, maxAttempts, last);
}

export function applySession(
  client: ClusterClient,
  adapter: MeshAdapter,
  intent: Parameters<MeshAdapter['plan']>[1],
  options?: ApplyOptions,
): Promise<ApplyResult> {
  return reconcile(
    client,
    `routing session ${intent.sessionId} with ${adapter.kind}`,
    () => observe(client, adapter.queries(intent)),
    (observed) => adapter.plan(observed, intent),
    options,
  );
}

export function revertSession(
  client: ClusterClient,
  adapter: MeshAdapter,
  sessionId: string,
  options?: ApplyOptions,
): Promise<ApplyResult> {
  return reconcile(
    client,
    `reverting session ${sessionId} with ${adapter.kind}`,
    () => observe(client, adapter.revertQueries()),
    (observed) => adapter.planRevert(observed, sessionId),
    options,
  );
}

/** The list calls every adapter's revert needs, each once. */
export function janitorQueries(adapters: readonly MeshAdapter[]): ListQuery[] {
  const seen = new Set<string>();
  return adapters
    .flatMap((a) => a.revertQueries())
    .filter((q) => {
      const key = `${q.apiVersion}/${q.kind}/${q.namespace ?? ''}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}

const LEASES: ListQuery = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', resource: 'leases' };

/**
 * The janitor against a cluster. Objects are listed before Leases: a session creates its Lease
 * before its first route, so a route seen has its Lease in the later list unless it is dead.
 */
export async function runJanitor(
  client: ClusterClient,
  adapters: readonly MeshAdapter[],
  now: () => Date,
  options: ApplyOptions & { graceSeconds?: number } = {},
): Promise<ApplyResult & { dead: DeadSession[] }> {
  const queries = janitorQueries(adapters);
  const dead = new Map<string, DeadSession>();
  let leases: KubeObject[] = [];
  const skipped = new Set<string>();
  const result = await reconcile(
    client,
    'janitor',
    async () => {
      // Clean up what this identity may see: a kind it may not list (403) is skipped with a
      // warning rather than stopping the cleanup of everything else.
      const lists = await Promise.all(
        queries.map((q) =>
          client.list(q).catch((error: unknown) => {
            if (!(error instanceof PermissionDeniedError)) throw error;
            skipped.add(error.message);
            return [] as KubeObject[];
          }),
        ),
      );
      leases = await client.list(LEASES);
      return lists.flat();
    },
    (objects) => {
      const input: Parameters<typeof planJanitor>[0] = { objects, leases, now: now(), adapters };
      if (options.graceSeconds !== undefined) input.graceSeconds = options.graceSeconds;
      const plan = planJanitor(input);
      for (const d of plan.dead) dead.set(d.sessionId, d);
      return plan;
    },
    options,
  );
  return { ...result, warnings: [...result.warnings, ...skipped], dead: [...dead.values()] };
}
