/** Shared test helpers: fixtures as YAML, intents with overrides, apply/revert on a model cluster. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { MeshAdapter } from '../src/adapter.ts';
import { restoredExactly } from '../src/canonical.ts';
import { InMemoryCluster } from '../src/in-memory-cluster.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import { describeRef, refOf, sameObject } from '../src/k8s-object.ts';
import type { SessionIntent, SessionMode } from '../src/session-intent.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');

export function loadFixture(path: string): KubeObject[] {
  const text = readFileSync(join(FIXTURES, path), 'utf8');
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null);
}

export function fixtureNames(dir: string): string[] {
  return readdirSync(join(FIXTURES, dir))
    .filter((f) => f.endsWith('.yaml'))
    .sort();
}

export function intent(overrides: Partial<SessionIntent> & { mode?: SessionMode } = {}): SessionIntent {
  return {
    sessionId: 'dev-a',
    target: { namespace: 'staging', host: 'orders.staging.svc.cluster.local', port: 8080 },
    mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: 'dev-a' } } } },
    agent: { name: 'detour-agent', namespace: 'staging', port: 15080, selector: { app: 'detour-agent' } },
    holder: 'alice@laptop',
    lease: { name: 'detour-dev-a', namespace: 'staging', uid: 'lease-uid-a' },
    ...overrides,
  };
}

/** An intent for session `id`, stealing `x-dev: <id>`. */
export function sessionIntent(id: string, overrides: Partial<SessionIntent> = {}): SessionIntent {
  return intent({
    sessionId: id,
    mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: id } } } },
    holder: `${id}@host`,
    lease: { name: `detour-${id}`, namespace: 'staging', uid: `lease-uid-${id}` },
    ...overrides,
  });
}

/** Asserts that every object of `before` is as it was in `cluster` and that nothing else is left. */
export function assertRestored(before: readonly KubeObject[], cluster: InMemoryCluster): void {
  const after = cluster.list();
  for (const object of before) {
    const now = after.find((o) => sameObject(refOf(o), refOf(object)));
    const result = restoredExactly(object, now);
    assert.ok(result.ok, `${describeRef(refOf(object))} not restored: ${JSON.stringify(result)}`);
  }
  const extra = after.filter((o) => !before.some((b) => sameObject(refOf(b), refOf(o))));
  assert.deepEqual(
    extra.map((o) => describeRef(refOf(o))),
    [],
    'objects left behind',
  );
}

/** plan → apply → (re-plan is empty) → revert → (re-revert is empty) → exact restore. */
export function roundTrip(
  adapter: MeshAdapter,
  objects: readonly KubeObject[],
  i: SessionIntent,
): InMemoryCluster {
  const cluster = new InMemoryCluster(objects);
  const before = cluster.list();
  const plan = adapter.plan(cluster.list(), i);
  assert.ok(plan.writes.length > 0, 'the plan writes something');
  cluster.applyPlan(plan);
  assert.deepEqual(adapter.plan(cluster.list(), i).writes, [], 'plan is idempotent');
  const revert = adapter.planRevert(cluster.list(), i.sessionId);
  cluster.applyPlan(revert);
  assert.deepEqual(adapter.planRevert(cluster.list(), i.sessionId).writes, [], 'revert is idempotent');
  assertRestored(before, cluster);
  return cluster;
}

/** Seeded PRNG (mulberry32): random orders that a failing run can replay. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
