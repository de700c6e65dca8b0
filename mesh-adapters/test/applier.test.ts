import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApplyGaveUpError, applySession, revertSession, runJanitor } from '../src/applier.ts';
import { restoredExactly } from '../src/canonical.ts';
import { InMemoryCluster } from '../src/in-memory-cluster.ts';
import { allAdapters } from '../src/index.ts';
import { createIstioVirtualServiceAdapter } from '../src/istio-virtualservice/adapter.ts';
import type { VirtualService } from '../src/istio-virtualservice/types.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import { refOf } from '../src/k8s-object.ts';
import { buildLease } from '../src/lease.ts';
import { memoryClient } from '../src/memory-client.ts';
import type { Write } from '../src/plan.ts';
import { intent, loadFixture, prng, sessionIntent } from './support.ts';

const istio = createIstioVirtualServiceAdapter();
const fast = { sleep: async () => {}, random: prng(1) };

describe('applier', () => {
  test('applies, confirms with an empty re-plan, reverts exactly', async () => {
    const cluster = new InMemoryCluster(loadFixture('virtualservices/rich.yaml'));
    const [before] = cluster.list();
    const client = memoryClient(cluster);
    const applied = await applySession(client, istio, intent(), fast);
    assert.equal(applied.attempts, 2);
    assert.equal(applied.applied.length, 1);
    const reverted = await revertSession(client, istio, 'dev-a', fast);
    assert.equal(reverted.applied.length, 1);
    assert.deepEqual(restoredExactly(before, cluster.list()[0]), { ok: true });
  });

  test('a conflicting write by someone else: re-read, re-plan, both changes kept', async () => {
    const cluster = new InMemoryCluster(loadFixture('virtualservices/rich.yaml'));
    const [before] = cluster.list();
    let interfere = 3;
    const client = memoryClient(cluster, {
      beforeWrite: () => {
        if (interfere-- <= 0) return;
        cluster.edit(refOf(before as KubeObject), (o) => {
          const vs = o as VirtualService;
          const canary = vs.spec?.http?.find((r) => r.name === 'canary');
          if (canary) canary.timeout = `${interfere}s`;
        });
      },
    });
    const result = await applySession(client, istio, intent(), fast);
    assert.equal(result.attempts, 5, 'three conflicts, one success, one confirmation');
    const vs = cluster.list()[0] as VirtualService;
    assert.equal(vs.spec?.http?.[0]?.name, 'detour-dev-a');
    assert.equal(vs.spec?.http?.find((r) => r.name === 'canary')?.timeout, '0s');
  });

  test('gives up after maxAttempts, with a clear error', async () => {
    const cluster = new InMemoryCluster(loadFixture('virtualservices/simple.yaml'));
    const [vs] = cluster.list();
    const client = memoryClient(cluster, {
      beforeWrite: () =>
        cluster.edit(refOf(vs as KubeObject), (o) => {
          o.metadata.labels = { ...o.metadata.labels, tick: 'x' };
        }),
    });
    await assert.rejects(
      applySession(client, istio, intent(), { ...fast, maxAttempts: 4 }),
      (e: unknown) => e instanceof ApplyGaveUpError && e.attempts === 4 && /GitOps/.test(e.message),
    );
  });

  test('make-before-break: the route is written only after the subset has propagated', async () => {
    const cluster = new InMemoryCluster(loadFixture('virtualservices/simple.yaml'));
    const events: string[] = [];
    const client = memoryClient(cluster, {
      beforeWrite: (w: Write) => events.push(`write ${w.op === 'delete' ? w.ref.kind : w.object.kind}`),
    });
    const mode = {
      kind: 'feature-env',
      filter: { headers: { 'x-env': { exact: 'fx' } } },
      subset: { name: 'fx', labels: { env: 'fx' } },
    } as const;
    await applySession(client, istio, intent({ mode }), {
      ...fast,
      waitForPropagation: async (w) => {
        events.push(`propagated ${w.op === 'delete' ? w.ref.kind : w.object.kind}`);
      },
    });
    assert.deepEqual(events, ['write DestinationRule', 'propagated DestinationRule', 'write VirtualService']);
    events.length = 0;
    await revertSession(client, istio, 'dev-a', {
      ...fast,
      waitForPropagation: async (w) => {
        events.push(`propagated ${w.op === 'delete' ? w.ref.kind : w.object.kind}`);
      },
    });
    assert.deepEqual(events, ['write VirtualService', 'propagated VirtualService', 'write DestinationRule']);
  });

  test('janitor: reverts what expired sessions left, deletes their Leases, keeps the live session', async () => {
    const t0 = new Date('2026-11-21T21:00:00Z');
    const cluster = new InMemoryCluster(loadFixture('virtualservices/simple.yaml'));
    const client = memoryClient(cluster);
    const live = sessionIntent('live');
    const dead = sessionIntent('dead');
    await client.create(buildLease(dead, t0));
    await applySession(client, istio, dead, fast);
    await client.create(buildLease(live, new Date(t0.getTime() + 100_000)));
    await applySession(client, istio, live, fast);
    const result = await runJanitor(client, allAdapters(), () => new Date(t0.getTime() + 110_000), fast);
    assert.deepEqual(
      result.dead.map((d) => d.sessionId),
      ['dead'],
    );
    const names = cluster.list().map((o) => `${o.kind}/${o.metadata.name}`);
    assert.deepEqual(names.sort(), ['Lease/detour-live', 'Service/orders', 'VirtualService/orders']);
    const vs = cluster.list().find((o) => o.kind === 'VirtualService') as VirtualService;
    assert.deepEqual(
      (vs.spec?.http ?? []).map((r) => r.name),
      ['detour-live', 'primary'],
    );
    const again = await runJanitor(client, allAdapters(), () => new Date(t0.getTime() + 110_000), fast);
    assert.deepEqual(again.applied, [], 'idempotent');
  });
});
