// The agent's janitor against the real kube-apiserver (tier 1), with the agent's own identity: the
// ServiceAccount and Role of manifests/agent. A CLI killed with SIGKILL (a laptop that died) leaves
// its route behind; the agent sees the tunnel drop and, after its grace period, ends the session's
// Lease and reverts the route: long before the Lease would have expired.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { LEASE_ANNOTATIONS } from '@detour/mesh-adapters';
import { TunnelConnection } from '@detour/router/tunnel/index';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { kubeConfig, kubeconfigPath, useCluster } from '../../tests/cluster/cluster.ts';
import { OrdersFixture } from '../../tests/support/cluster-fixtures.ts';
import {
  cleanUntilExpired,
  type LoopbackAgent,
  loopbackAgent,
  sessionArgs,
} from '../../tests/support/loopback-session.ts';
import { ProcessSet } from '../../tests/support/processes.ts';
import { waitFor } from '../../tests/support/wait.ts';

describe('agent admission and janitor (real apiserver, agent Role)', () => {
  const processes = new ProcessSet();
  let stopCluster: () => Promise<void>;
  let fixture: OrdersFixture;
  let agent: LoopbackAgent;

  before(async () => {
    stopCluster = await useCluster();
    fixture = await new OrdersFixture(kubeConfig('admin'), `detour-janitor-${process.pid}`).create();
    agent = await loopbackAgent(processes, {
      KUBECONFIG: await fixture.agentKubeconfig(),
      DETOUR_JANITOR: 'on',
      DETOUR_NAMESPACE: fixture.namespace,
      DETOUR_JANITOR_GRACE_MS: '1000',
      DETOUR_JANITOR_INTERVAL_MS: '600000',
      DETOUR_HEARTBEAT_MS: '500',
      // No static token: CLIs are admitted only by their session Lease.
      DETOUR_TOKENS: '',
    });
  });

  after(async () => {
    await processes.stopAll();
    await fixture.delete();
    await stopCluster();
  });

  it('reverts the route of a CLI that vanished, after the grace period and before the lease expires', async () => {
    const cli = processes.start(
      'cli',
      await sessionArgs({ fixture, agent, session: 'gone', leaseSeconds: 120 }),
      {
        env: { ...process.env, KUBECONFIG: kubeconfigPath('developer') },
      },
    );
    await waitFor(
      { what: 'the route of session gone', timeoutMs: 20_000, detail: () => cli.tail() },
      async () => (await fixture.firstRouteName()) === 'detour-gone',
    );
    cli.signal('SIGKILL');
    await cli.exited;
    const killedAt = Date.now();
    await waitFor({ what: 'the agent to revert the route', timeoutMs: 20_000, detail: agent.log }, () =>
      fixture.restoredExactly(),
    );
    const tookMs = Date.now() - killedAt;
    assert.ok(tookMs < 120_000, 'well before the 120 s lease would have expired');
    assert.match(agent.log(), /"event":"janitor.lease-ended".*"session":"gone"/);
    await waitFor({ what: 'the janitor.reverted log line', timeoutMs: 5_000, detail: agent.log }, () =>
      /"event":"janitor.reverted".*"sessionId":"gone"/.test(agent.log()),
    );
    process.stderr.write(
      `# agent reverted a SIGKILLed session ${tookMs} ms after the kill (grace 1 s, lease 120 s)\n`,
    );
  });

  it('leaves a session another replica still holds: only the Lease expiring ends it', async () => {
    const cli = processes.start(
      'cli',
      await sessionArgs({ fixture, agent, session: 'shared', leaseSeconds: 6 }),
      { env: { ...process.env, KUBECONFIG: kubeconfigPath('developer') } },
    );
    await waitFor(
      { what: 'the route of session shared', timeoutMs: 20_000, detail: () => cli.tail() },
      async () => (await fixture.firstRouteName()) === 'detour-shared',
    );
    // What a second replica holding this session's tunnel would have written.
    const leases = kubeConfig('admin').makeApiClient(CoordinationV1Api);
    const lease = await leases.readNamespacedLease({ name: 'detour-shared', namespace: fixture.namespace });
    lease.metadata = {
      ...lease.metadata,
      annotations: {
        ...lease.metadata?.annotations,
        [LEASE_ANNOTATIONS.servedBy]: JSON.stringify({
          holders: [{ pod: 'agent-elsewhere', address: '198.18.0.9:8080' }],
          mode: 'steal',
          filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
        }),
      },
    };
    await leases.replaceNamespacedLease({ name: 'detour-shared', namespace: fixture.namespace, body: lease });
    cli.signal('SIGKILL');
    await cli.exited;
    await waitFor({ what: 'the janitor to see the other holder', timeoutMs: 10_000, detail: agent.log }, () =>
      /"event":"janitor.session-held-elsewhere".*"session":"shared".*agent-elsewhere/.test(agent.log()),
    );
    assert.equal(await fixture.firstRouteName(), 'detour-shared', 'the route stays while another holds it');
    assert.doesNotMatch(agent.log(), /"event":"janitor.lease-ended".*"session":"shared"/);
    // Nobody renews it any more: once expired, any detour's janitor reverts it.
    await cleanUntilExpired(agent, fixture.namespace, 'shared', {
      ...process.env,
      KUBECONFIG: kubeconfigPath('developer'),
    });
    assert.ok(await fixture.restoredExactly());
  });

  it('refuses a tunnel whose token no live session Lease carries', async () => {
    const [host = '', port = ''] = agent.tunnel.split(':');
    await assert.rejects(
      TunnelConnection.connect(net.connect(Number(port), host), { token: 'guessed', client: 'intruder' }),
      {
        code: 'DETOUR_TUNNEL_AUTH',
        message: /session token was not accepted/,
      },
    );
    await waitFor({ what: 'the agent to log the refusal', timeoutMs: 5_000, detail: agent.log }, () =>
      /"event":"tunnel.refused".*DETOUR_TUNNEL_AUTH/.test(agent.log()),
    );
  });

  it('keeps the route of a session whose tunnel stays up', async () => {
    const cli = processes.start(
      'cli',
      await sessionArgs({ fixture, agent, session: 'back', leaseSeconds: 120 }),
      {
        env: { ...process.env, KUBECONFIG: kubeconfigPath('developer') },
      },
    );
    await waitFor(
      { what: 'the route of session back', timeoutMs: 20_000, detail: () => cli.tail() },
      async () => (await fixture.firstRouteName()) === 'detour-back',
    );
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal(await fixture.firstRouteName(), 'detour-back', 'a live session keeps its route');
    await cli.stop(15_000);
    assert.ok(await fixture.restoredExactly());
  });
});
