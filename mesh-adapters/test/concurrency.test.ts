/**
 * Concurrency as a pure property: 20 sessions apply and revert their routes on one object in a
 * random interleaving, each write carrying the resourceVersion it read; a conflict makes that session
 * re-read and re-plan (what the applier does against the apiserver). Meanwhile a person edits an
 * unrelated route. After every successful write no live session's route is missing; at the end
 * the object equals the original plus the person's edit.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MeshAdapter } from '../src/adapter.ts';
import { restoredExactly } from '../src/canonical.ts';
import { InMemoryCluster, WriteConflictError } from '../src/in-memory-cluster.ts';
import { createIstioEnvoyFilterAdapter } from '../src/istio-envoyfilter/adapter.ts';
import { createIstioVirtualServiceAdapter } from '../src/istio-virtualservice/adapter.ts';
import type { VirtualService } from '../src/istio-virtualservice/types.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import { refOf, sameObject } from '../src/k8s-object.ts';
import type { Plan, Write } from '../src/plan.ts';
import { createServiceAdapter } from '../src/service/adapter.ts';
import type { SessionIntent } from '../src/session-intent.ts';
import { loadFixture, prng, sessionIntent } from './support.ts';

interface Actor {
  intent: SessionIntent;
  phase: 'apply' | 'revert' | 'done';
  cyclesLeft: number;
  /** What the actor read and planned on, or undefined before it reads. */
  pending?: { plan: Plan; next: number };
  live: boolean;
}

function applyOneWrite(cluster: InMemoryCluster, write: Write): boolean {
  try {
    cluster.apply(write);
    return true;
  } catch (error) {
    if (error instanceof WriteConflictError) return false;
    throw error;
  }
}

interface RunResult {
  conflicts: number;
  writes: number;
}

function run(
  adapter: MeshAdapter,
  objects: KubeObject[],
  options: {
    seed: number;
    sessions: number;
    cycles: number;
    routePresent: (objects: KubeObject[], sessionId: string) => boolean;
    person?: (cluster: InMemoryCluster) => void;
  },
): { cluster: InMemoryCluster } & RunResult {
  const random = prng(options.seed);
  const cluster = new InMemoryCluster(objects);
  const actors: Actor[] = Array.from({ length: options.sessions }, (_, i) => ({
    intent: sessionIntent(`dev-${i}`),
    phase: 'apply',
    cyclesLeft: options.cycles,
    live: false,
  }));
  let personEditsLeft = options.person ? 1 : 0;
  let conflicts = 0;
  let writes = 0;
  let guard = 0;
  while (actors.some((a) => a.phase !== 'done') || personEditsLeft > 0) {
    if (++guard > 200_000) throw new Error('no progress');
    if (personEditsLeft > 0 && random() < 0.02) {
      options.person?.(cluster);
      personEditsLeft--;
      continue;
    }
    const busy = actors.filter((a) => a.phase !== 'done');
    if (busy.length === 0) continue;
    const actor = busy[Math.floor(random() * busy.length)] as Actor;
    if (actor.pending === undefined) {
      // Read and plan (an actor may sit on a stale plan while others write: that is the point).
      const observed = cluster.list();
      // A session that starts reverting no longer expects its route to stay.
      if (actor.phase === 'revert') actor.live = false;
      const plan =
        actor.phase === 'apply'
          ? adapter.plan(observed, actor.intent)
          : adapter.planRevert(observed, actor.intent.sessionId);
      actor.pending = { plan, next: 0 };
      continue;
    }
    const { plan, next } = actor.pending;
    const write = plan.writes[next];
    if (write !== undefined) {
      if (!applyOneWrite(cluster, write)) {
        conflicts++;
        actor.pending = undefined; // re-read, re-plan
        continue;
      }
      writes++;
      actor.pending.next++;
      if (actor.pending.next < plan.writes.length) continue;
    }
    // The plan is fully applied (or was empty): the phase is over.
    actor.pending = undefined;
    if (actor.phase === 'apply') {
      actor.live = true;
      actor.phase = 'revert';
    } else {
      actor.cyclesLeft--;
      actor.phase = actor.cyclesLeft > 0 ? 'apply' : 'done';
    }
    const now = cluster.list();
    for (const a of actors) {
      if (a.live)
        assert.ok(
          options.routePresent(now, a.intent.sessionId),
          `route of ${a.intent.sessionId} lost (seed ${options.seed})`,
        );
    }
  }
  return { cluster, conflicts, writes };
}

const vsHasRoute = (objects: KubeObject[], id: string) =>
  objects.some(
    (o) =>
      o.kind === 'VirtualService' && (o as VirtualService).spec?.http?.some((r) => r.name === `detour-${id}`),
  );

describe('concurrency: 20 sessions × 10 apply/revert cycles, random interleavings', () => {
  const istio = createIstioVirtualServiceAdapter();
  for (const seed of [1, 2, 3, 42, 2026]) {
    test(`istio, an existing VirtualService edited by a person meanwhile (seed ${seed})`, () => {
      const original = loadFixture('virtualservices/rich.yaml');
      const [vs] = original;
      const { cluster, conflicts } = run(istio, original, {
        seed,
        sessions: 20,
        cycles: 10,
        routePresent: vsHasRoute,
        person: (c) =>
          c.edit(refOf(vs as KubeObject), (o) => {
            const http = (o as VirtualService).spec?.http ?? [];
            const canary = http.find((r) => r.name === 'canary');
            if (canary) canary.timeout = '7s';
          }),
      });
      assert.ok(conflicts > 0, 'the interleaving produced conflicts');
      const after = cluster.list().find((o) => sameObject(refOf(o), refOf(vs as KubeObject)));
      const result = restoredExactly(vs, after, [
        { op: 'set', path: ['spec', 'http', 1, 'timeout'], value: '7s' },
      ]);
      assert.deepEqual(result, { ok: true });
      assert.equal(cluster.list().length, original.length);
    });

    test(`istio, no VirtualService: created by the first, deleted by the last (seed ${seed})`, () => {
      const { cluster } = run(istio, [], { seed, sessions: 20, cycles: 3, routePresent: vsHasRoute });
      assert.deepEqual(cluster.list(), []);
    });
  }

  test('service adapter: 20 sessions share the selector switch and the shadow Service', () => {
    const original = loadFixture('virtualservices/simple.yaml').filter((o) => o.kind === 'Service');
    const adapter = createServiceAdapter();
    const { cluster } = run(adapter, original, {
      seed: 7,
      sessions: 20,
      cycles: 3,
      routePresent: (objects, id) =>
        objects.some(
          (o) =>
            o.kind === 'Service' &&
            (o.metadata.annotations?.['detour.dev/sessions'] ?? '').includes(`"${id}"`),
        ),
    });
    assert.deepEqual(
      restoredExactly(
        original[0],
        cluster.list().find((o) => o.metadata.name === 'orders'),
      ),
      { ok: true },
    );
    assert.equal(cluster.list().length, 1, 'shadow Service gone');
  });

  test('envoyfilter adapter: one object per session, nothing left', () => {
    const { cluster } = run(createIstioEnvoyFilterAdapter(), [], {
      seed: 9,
      sessions: 20,
      cycles: 3,
      routePresent: (objects, id) =>
        objects.some((o) => o.kind === 'EnvoyFilter' && o.metadata.name === `detour-${id}`),
    });
    assert.deepEqual(cluster.list(), []);
  });
});
