// Against the real kube-apiserver of tests/cluster (tier 1), as the developer identity bound to
// manifests/rbac: every adapter applied and reverted on the fixtures with exact restoration,
// 20 sessions × 10 cycles on one VirtualService while someone edits it, the janitor after a Lease
// expires, and the RBAC preflight. Not part of the unit run (it needs the cluster):
//   npm run cluster:up && node --test mesh-adapters/test/cluster/adapters.cluster.ts
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kubeConfig, useCluster } from '../../../tests/cluster/cluster.ts';
import { inNamespace, QUERIES } from '../../src/adapter.ts';
import {
  applySession,
  janitorQueries,
  namespacedClient,
  revertSession,
  runJanitor,
} from '../../src/applier.ts';
import { restoredExactly } from '../../src/canonical.ts';
import type { MeshKind } from '../../src/index.ts';
import { adapterFor, allAdapters } from '../../src/index.ts';
import type { VirtualService } from '../../src/istio-virtualservice/types.ts';
import type { KubeObject } from '../../src/k8s-object.ts';
import { refOf } from '../../src/k8s-object.ts';
import { kubeClient, PermissionDeniedError } from '../../src/kube-client.ts';
import { buildLease } from '../../src/lease.ts';
import { preflight, requiredPermissions } from '../../src/permissions.ts';
import type { SessionIntent } from '../../src/session-intent.ts';
import { fixtureNames, loadFixture, sessionIntent } from '../support.ts';

const ns = `detour-ma-${process.pid}`;
const fast = { backoffMs: 20 };

/** A fixture moved into the test namespace (names, hosts) and stripped of server-set fields. */
function relocate(objects: KubeObject[]): KubeObject[] {
  return objects.map((o) => {
    const moved = JSON.parse(
      JSON.stringify(o).replaceAll('.staging.', `.${ns}.`).replaceAll('"staging"', `"${ns}"`),
    ) as KubeObject;
    delete moved.metadata.resourceVersion;
    delete moved.metadata.uid;
    delete moved.metadata.creationTimestamp;
    return moved;
  });
}

function target(i: SessionIntent): SessionIntent {
  return {
    ...i,
    target: { namespace: ns, host: `orders.${ns}.svc.cluster.local`, port: 8080 },
    agent: { name: 'detour-agent', namespace: ns, port: 15080, selector: { app: 'detour-agent' } },
    lease: { ...i.lease, namespace: ns },
  };
}

describe('mesh adapters against the tier-1 apiserver', () => {
  let stop: () => Promise<void> = async () => {};
  const admin = () => kubeClient(kubeConfig('admin'));
  const dev = () => kubeClient(kubeConfig('developer'));

  before(async () => {
    stop = await useCluster((line) => console.log(`# ${line}`));
    await admin().create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  });

  after(async () => {
    await admin()
      .delete({ apiVersion: 'v1', kind: 'Namespace', name: ns }, {})
      .catch(() => {});
    await stop();
  });

  it('preflight: the developer ClusterRole allows the istio adapters and names what the others lack', async () => {
    const client = dev();
    for (const kind of ['istio', 'istio-envoyfilter'] as const) {
      await preflight(client, requiredPermissions(adapterFor(kind), target(sessionIntent('pre'))));
    }
    await assert.rejects(
      preflight(client, requiredPermissions(adapterFor('service'), target(sessionIntent('pre')))),
      (e: unknown) => e instanceof PermissionDeniedError && /services/.test(e.message),
    );
  });

  for (const fixture of fixtureNames('virtualservices').filter(
    (f) =>
      !(
        // refusals, and fixtures spanning other namespaces (covered by the unit tests)
        [
          'wildcard.yaml',
          'argocd.yaml',
          'tcp-only.yaml',
          'delegate.yaml',
          'exported-and-duplicated.yaml',
        ].includes(f)
      ),
  )) {
    it(`istio: ${fixture} applied and reverted, restored exactly`, async () => {
      const objects = relocate(loadFixture(`virtualservices/${fixture}`)).filter(
        (o) => o.kind === 'VirtualService',
      );
      const a = admin();
      for (const o of objects) await a.create(o);
      const before = await a.list(inNamespace(QUERIES.virtualServices, ns));
      const client = dev();
      const i = target(sessionIntent('fx'));
      const lease = await client.create(buildLease(i, new Date()));
      i.lease.uid = lease.metadata.uid as string;
      await applySession(client, adapterFor('istio'), i, fast);
      await revertSession(client, adapterFor('istio'), i.sessionId, fast);
      const afterList = await a.list(inNamespace(QUERIES.virtualServices, ns));
      for (const b of before) {
        const now = afterList.find((o) => o.metadata.name === b.metadata.name);
        assert.deepEqual(restoredExactly(b, now), { ok: true }, b.metadata.name);
      }
      assert.equal(afterList.length, before.length);
      for (const o of objects) await a.delete(refOf(o), {});
      await client.delete(refOf(lease), {});
    });
  }

  it('20 sessions × 10 apply/revert cycles on one VirtualService while another writer edits it: nothing lost, exact end', async () => {
    const a = admin();
    const [vs] = relocate(loadFixture('virtualservices/rich.yaml')).filter(
      (o) => o.kind === 'VirtualService',
    );
    const created = await a.create(vs as KubeObject);
    const client = dev();
    const istio = adapterFor('istio');
    const sessions = Array.from({ length: 20 }, (_, n) => target(sessionIntent(`c${n}`)));
    let writerEdits = 0;
    let stopWriter = false;
    // The other writer: read-modify-write of an unrelated route's timeout, retrying on conflict.
    const writer = (async () => {
      while (!stopWriter) {
        const [current] = await a.list(inNamespace(QUERIES.virtualServices, ns));
        const edited = structuredClone(current as VirtualService);
        const canary = edited.spec?.http?.find((r) => r.name === 'canary');
        if (canary) canary.timeout = `${(writerEdits % 9) + 1}s`;
        try {
          await a.replace(edited);
          writerEdits++;
        } catch {
          // conflict: read again
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const started = Date.now();
    let conflicts = 0;
    await Promise.all(
      sessions.map(async (i) => {
        for (let cycle = 0; cycle < 10; cycle++) {
          const applied = await applySession(client, istio, i, { ...fast, maxAttempts: 40 });
          conflicts += applied.attempts - 2;
          const [now] = await client.list(inNamespace(QUERIES.virtualServices, ns));
          assert.ok(
            ((now as VirtualService).spec?.http ?? []).some((r) => r.name === `detour-${i.sessionId}`),
            `route of ${i.sessionId} present`,
          );
          const reverted = await revertSession(client, istio, i.sessionId, { ...fast, maxAttempts: 40 });
          conflicts += reverted.attempts - 2;
        }
      }),
    );
    stopWriter = true;
    await writer;
    console.log(
      `# 400 apply/revert cycles in ${Date.now() - started} ms, ${conflicts} re-plans, ${writerEdits} edits by the other writer`,
    );
    const [final] = await a.list(inNamespace(QUERIES.virtualServices, ns));
    const lastTimeout = (final as VirtualService).spec?.http?.find((r) => r.name === 'canary')?.timeout;
    assert.ok(writerEdits > 0);
    assert.deepEqual(
      restoredExactly(created, final, [
        { op: 'set', path: ['spec', 'http', 1, 'timeout'], value: lastTimeout },
      ]),
      { ok: true },
    );
    await a.delete(refOf(created), {});
  });

  it('janitor: a session whose Lease expired is reverted by another client, its Lease deleted', async () => {
    const a = admin();
    const [vs] = relocate(loadFixture('virtualservices/simple.yaml')).filter(
      (o) => o.kind === 'VirtualService',
    );
    const created = await a.create(vs as KubeObject);
    const crashed = dev();
    const i = target(sessionIntent('crashed'));
    const lease = await crashed.create(buildLease(i, new Date(), { durationSeconds: 1 }));
    i.lease.uid = lease.metadata.uid as string;
    await applySession(crashed, adapterFor('istio'), i, fast);
    await applySession(crashed, adapterFor('istio-envoyfilter', { envoyFilter: { namespace: ns } }), i, fast);
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 1500));
    const result = await runJanitor(
      dev(),
      allAdapters({ envoyFilter: { namespace: ns } }),
      () => new Date(),
      fast,
    );
    console.log(
      `# janitor reverted ${result.dead.map((d) => d.sessionId).join(', ')} ${Date.now() - started} ms after the crash`,
    );
    assert.deepEqual(
      result.dead.map((d) => d.sessionId),
      ['crashed'],
    );
    const [now] = await a.list(inNamespace(QUERIES.virtualServices, ns));
    assert.deepEqual(restoredExactly(created, now), { ok: true });
    assert.deepEqual(await a.list(inNamespace(QUERIES.envoyFilters, ns)), []);
    assert.deepEqual(await a.list(inNamespace(QUERIES.leases, ns)), []);
    await a.delete(refOf(created), {});
  });

  const featureEnv: SessionIntent['mode'] = {
    kind: 'feature-env',
    filter: { headers: { 'x-env': { exact: 'fx' } } },
    subset: { name: 'fx', labels: { env: 'fx' } },
  };
  const modes: Array<[string, SessionIntent['mode']]> = [
    ['steal', sessionIntent('m').mode],
    ['steal-all', { kind: 'steal-all' }],
    ['mirror', { kind: 'mirror', filter: { headers: { 'x-dev': { prefix: 'dev-' } } }, percent: 50 }],
    ['feature-env', featureEnv],
  ];
  const cases: Array<[MeshKind, string, SessionIntent['mode'], Partial<SessionIntent>]> = [];
  for (const kind of ['istio', 'istio-envoyfilter', 'gateway-api'] as const) {
    for (const [name, mode] of modes) {
      if (kind === 'gateway-api' && name === 'feature-env') continue;
      cases.push([kind, name, mode, {}]);
    }
  }
  cases.push([
    'gateway-api',
    'steal, agent in another namespace',
    sessionIntent('m').mode,
    { agent: { name: 'detour-agent', namespace: 'default', port: 15080 } },
  ]);
  cases.push(['service', 'steal', sessionIntent('m').mode, {}]);

  for (const [kind, name, mode, extra] of cases) {
    it(`${kind}, ${name}: accepted by the CRD schemas, converges (re-plan empty), reverted exactly`, async () => {
      const a = admin();
      const seed = relocate(loadFixture('virtualservices/rich.yaml'));
      seed.push(relocate(loadFixture('gateway-api/producer-routes.yaml'))[0] as KubeObject);
      seed.push(...relocate(loadFixture('virtualservices/simple.yaml')).filter((o) => o.kind === 'Service'));
      for (const o of seed) await a.create(o);
      const adapter = adapterFor(kind, { envoyFilter: { namespace: ns } });
      const everything = async () => {
        const lists = await Promise.all(
          [...janitorQueries(allAdapters()), QUERIES.leases].map((q) =>
            a.list({ ...q, namespace: q.kind === 'ReferenceGrant' ? 'default' : ns }),
          ),
        );
        return lists.flat();
      };
      try {
        const before = await everything();
        // The service adapter needs the no-mesh role, which the tier-1 developer is not bound to.
        const client = kind === 'service' ? a : dev();
        const i: SessionIntent = { ...target(sessionIntent('m')), mode, ...extra };
        // A real Lease: the objects detour creates are owned by it, and the garbage collector
        // deletes objects whose owner does not exist.
        const lease = await client.create(buildLease(i, new Date()));
        i.lease = { ...i.lease, uid: lease.metadata.uid as string };
        const applied = await applySession(client, adapter, i, fast);
        assert.equal(applied.attempts, 2, `converged: ${JSON.stringify(applied.applied.map((w) => w.op))}`);
        await revertSession(client, adapter, 'm', fast);
        await client.delete(refOf(lease), {});
        const after = await everything();
        for (const b of before) {
          const now = after.find((o) => o.kind === b.kind && o.metadata.name === b.metadata.name);
          assert.deepEqual(restoredExactly(b, now), { ok: true }, `${b.kind} ${b.metadata.name}`);
        }
        assert.deepEqual(
          after.map((o) => `${o.kind}/${o.metadata.name}`).sort(),
          before.map((o) => `${o.kind}/${o.metadata.name}`).sort(),
        );
      } finally {
        for (const o of await everything()) await a.delete(refOf(o), {}).catch(() => {});
      }
    });
  }

  it('bad input and uneditable objects: a clear error and the cluster unchanged (every object listed before and after)', async () => {
    const a = admin();
    const seed = relocate([
      ...loadFixture('virtualservices/wildcard.yaml'),
      ...loadFixture('virtualservices/simple.yaml'),
    ]);
    for (const o of seed) await a.create(o);
    const everything = async () =>
      (await Promise.all(janitorQueries(allAdapters()).map((q) => a.list({ ...q, namespace: ns })))).flat();
    try {
      const before = await everything();
      const client = dev();
      const bad: Array<[SessionIntent, RegExp]> = [
        [
          {
            ...target(sessionIntent('b')),
            mode: { kind: 'steal', filter: { headers: { 'x dev': { exact: 'a' } } } },
          },
          /not a valid header name/,
        ],
        [
          {
            ...target(sessionIntent('b')),
            mode: { kind: 'steal', filter: { headers: { 'x-dev': { regex: '(?=a)' } } } },
          },
          /RE2/,
        ],
        [
          {
            ...target(sessionIntent('b')),
            target: { namespace: ns, host: `nothing.${ns}.svc.cluster.local`, port: 8080 },
          },
          /no Service serves/,
        ],
      ];
      for (const [i, message] of bad) {
        const adapter = adapterFor(i.target.host.startsWith('nothing') ? 'service' : 'istio');
        await assert.rejects(applySession(client, adapter, i, fast), message);
      }
      // A host that only the wildcard VirtualService covers.
      const other = {
        ...target(sessionIntent('b')),
        target: { namespace: ns, host: `payments.${ns}.svc.cluster.local`, port: 8080 },
      };
      await assert.rejects(
        applySession(client, adapterFor('istio'), other, fast),
        /field spec\.hosts: .*Fix: use --mesh istio-envoyfilter/,
      );
      const after = await everything();
      assert.deepEqual(
        after.map((o) => `${o.kind}/${o.metadata.name}@${o.metadata.resourceVersion}`).sort(),
        before.map((o) => `${o.kind}/${o.metadata.name}@${o.metadata.resourceVersion}`).sort(),
      );
    } finally {
      for (const o of await everything()) await a.delete(refOf(o), {}).catch(() => {});
    }
  });

  it('a session process killed with SIGKILL: the janitor in another process reverts it once its Lease expires', async () => {
    const a = admin();
    const [vs] = relocate(loadFixture('virtualservices/rich.yaml')).filter(
      (o) => o.kind === 'VirtualService',
    );
    const created = await a.create(vs as KubeObject);
    const child = spawn(process.execPath, [join(import.meta.dirname, 'session-child.ts'), ns, 'killed'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        child.on('exit', (code) => reject(new Error(`session child exited with ${code}`)));
      });
      const [routed] = await a.list(inNamespace(QUERIES.virtualServices, ns));
      assert.equal((routed as VirtualService).spec?.http?.[0]?.name, 'detour-killed');
      // Still alive: the janitor leaves it alone.
      await new Promise((r) => setTimeout(r, 2500));
      assert.deepEqual(
        (await runJanitor(namespacedClient(dev(), ns), allAdapters(), () => new Date(), fast)).dead,
        [],
      );
      child.kill('SIGKILL');
      const killedAt = Date.now();
      let dead: string[] = [];
      while (dead.length === 0 && Date.now() - killedAt < 30_000) {
        await new Promise((r) => setTimeout(r, 250));
        // Scoped to this test's namespace: other suites' sessions on the same cluster are not its business.
        dead = (
          await runJanitor(namespacedClient(dev(), ns), allAdapters(), () => new Date(), fast)
        ).dead.map((d) => d.sessionId);
      }
      console.log(
        `# SIGKILLed session reverted by the janitor ${Date.now() - killedAt} ms after the kill (Lease duration 2 s)`,
      );
      assert.deepEqual(dead, ['killed']);
      const [now] = await a.list(inNamespace(QUERIES.virtualServices, ns));
      assert.deepEqual(restoredExactly(created, now), { ok: true });
      assert.deepEqual(await a.list(inNamespace(QUERIES.leases, ns)), []);
    } finally {
      child.kill('SIGKILL');
      await a.delete(refOf(created), {}).catch(() => {});
    }
  });
});
