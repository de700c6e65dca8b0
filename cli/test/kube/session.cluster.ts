// A whole session against the real kube-apiserver (tier 1) as the developer identity: the target
// resolved, the route written into the VirtualService, requests through the agent reaching the local
// app, and on exit the VirtualService restored to the byte; after a SIGKILL, `detour clean` from
// another process reverts it once the lease expires.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { request } from 'undici';
import { kubeConfig, kubeconfigPath, useCluster } from '../../../tests/cluster/cluster.ts';
import { OrdersFixture } from '../../../tests/support/cluster-fixtures.ts';
import { cleanUntilExpired, loopbackAgent, sessionArgs } from '../../../tests/support/loopback-session.ts';
import { ProcessSet, run } from '../../../tests/support/processes.ts';
import { waitFor } from '../../../tests/support/wait.ts';

describe('a session against the real apiserver', () => {
  const processes = new ProcessSet();
  const developerEnv = { ...process.env, KUBECONFIG: kubeconfigPath('developer') };
  let stopCluster: () => Promise<void>;
  let fixture: OrdersFixture;
  let agent: Awaited<ReturnType<typeof loopbackAgent>>;
  const leases = () => kubeConfig('admin').makeApiClient(CoordinationV1Api);

  before(async () => {
    stopCluster = await useCluster();
    fixture = await new OrdersFixture(kubeConfig('admin'), `detour-session-${process.pid}`).create();
    agent = await loopbackAgent(processes);
  });

  after(async () => {
    await processes.stopAll();
    await fixture.delete();
    await stopCluster();
  });

  async function startSession(session: string, leaseSeconds = 30) {
    const cli = processes.start(session, await sessionArgs({ fixture, agent, session, leaseSeconds }), {
      env: developerEnv,
    });
    await waitFor(
      {
        what: `the route of ${session} first in the VirtualService`,
        timeoutMs: 20_000,
        detail: () => cli.tail(),
      },
      async () => (await fixture.firstRouteName()) === `detour-${session}`,
    );
    return cli;
  }

  it('routes, serves with the target env, and restores the VirtualService exactly on exit', async () => {
    const cli = await startSession('s1');
    assert.deepEqual(
      (await fixture.virtualService()).spec.http.map((route) => route.name),
      ['detour-s1', 'canary', 'default'],
    );
    assert.match(cli.stderr, /"event":"mesh.detected".*routing with istio/);
    assert.equal(
      (await leases().readNamespacedLease({ name: 'detour-s1', namespace: fixture.namespace })).spec
        ?.leaseDurationSeconds,
      30,
    );

    // As the caller's sidecar would send it: to the agent, with the target's name as the Host.
    const answer = await waitFor(
      { what: 'x-dev: dev-a to reach the local app through the agent', timeoutMs: 10_000 },
      async () => {
        const response = await request(`${agent.inboundUrl}/`, {
          headers: { 'x-dev': 'dev-a', host: `orders.${fixture.namespace}.svc.cluster.local` },
        });
        return response.statusCode === 200
          ? ((await response.body.json()) as Record<string, string>)
          : undefined;
      },
    );
    const otherHost = await request(`${agent.inboundUrl}/`, {
      headers: { 'x-dev': 'dev-a', host: 'payments' },
    });
    assert.equal(otherHost.statusCode, 404, "the same header sent for another Service is not this session's");
    await otherHost.body.dump();
    assert.deepEqual(answer, { app: 'local', payments: 'http://payments:8080', dev: 'dev-a' });

    await cli.stop(15_000);
    assert.ok(await fixture.restoredExactly(), 'the VirtualService is back to what it was, to the byte');
    await assert.rejects(
      leases().readNamespacedLease({ name: 'detour-s1', namespace: fixture.namespace }),
      /404|not found/i,
    );
    assert.match(cli.stderr, /"event":"route.reverted"/);
  });

  it('after a SIGKILL, `detour clean` from another process reverts the route once the lease expires', async () => {
    const cli = await startSession('s2', 5);
    cli.signal('SIGKILL');
    await cli.exited;
    const killedAt = Date.now();
    assert.equal(
      await fixture.firstRouteName(),
      'detour-s2',
      'the route outlives the killed CLI until its lease expires',
    );

    const early = await run([process.execPath, agent.cli, 'clean', '-n', fixture.namespace, '--json'], {
      env: developerEnv,
    });
    assert.match(early.stderr, /0 dead session\(s\) reverted/, 'a live lease is left alone');
    await cleanUntilExpired(agent, fixture.namespace, 's2', developerEnv);
    const revertedAfterMs = Date.now() - killedAt;
    assert.ok(await fixture.restoredExactly());
    assert.ok(
      revertedAfterMs >= 4_000,
      `reverted ${revertedAfterMs} ms after the kill: not before the lease expired`,
    );
    process.stderr.write(
      `# SIGKILLed session reverted by detour clean ${revertedAfterMs} ms after the kill (lease 5 s)\n`,
    );
  });

  it('refuses a second session on the same header value, naming the holder, and leaves the cluster as it was', async () => {
    const cli = await startSession('s3');
    const before = JSON.stringify((await fixture.virtualService()).spec);
    const second = await run(
      [
        process.execPath,
        ...(await sessionArgs({ fixture, agent, session: 's4', command: ['true'] })).slice(1),
      ],
      {
        env: developerEnv,
      },
    );
    assert.equal(second.code, 2);
    assert.match(second.stderr, /already routed by session s3 of/);
    assert.equal(JSON.stringify((await fixture.virtualService()).spec), before);
    await assert.rejects(
      leases().readNamespacedLease({ name: 'detour-s4', namespace: fixture.namespace }),
      /404|not found/i,
    );
    await cli.stop(15_000);
    assert.ok(await fixture.restoredExactly());
  });
});
