/**
 * The CLI's tunnels to an agent with several replicas, against real agent processes on loopback
 * (each a "pod"): a tunnel to every ready replica with the session registered on each, replicas
 * that go away closed and new ones joined on the next pass, `--tunnels one` keeping a single one,
 * and a failed listing of the pods keeping what is up. Which pods are ready is the input here;
 * tests/e2e/replicas.test.ts runs the same through the real port-forward on the local cluster.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { TunnelCode, TunnelConnection } from '@detour/router/tunnel/index';
import { AgentTunnel, dial } from '../../cli/src/session/agent-tunnel.ts';
import { ReplicaTunnels } from '../../cli/src/session/replica-tunnels.ts';
import { type LoopbackAgent, loopbackAgent } from '../support/loopback-session.ts';
import { ProcessSet } from '../support/processes.ts';
import { waitFor } from '../support/wait.ts';

const pods = ['agent-a', 'agent-b', 'agent-c'] as const;

/** The sessions an agent has, asked over a tunnel of its own. */
async function sessionsAt(agent: LoopbackAgent): Promise<string[]> {
  const [host = '', port = ''] = agent.tunnel.split(':');
  const control = await TunnelConnection.connect(await dial(host, Number(port)), {
    token: 'tok',
    client: 'test-observer',
  });
  try {
    return ((await control.request('session.list', {})) as Array<{ id: string }>).map((s) => s.id);
  } finally {
    control.close();
  }
}

/** A tunnel as the CLI makes one per replica; streams the agent opens are refused. */
function tunnelTo(
  pod: string,
  connect: () => Promise<Duplex>,
  onConnected: (connection: TunnelConnection) => Promise<void>,
): AgentTunnel {
  return new AgentTunnel({
    address: pod,
    connect,
    token: 'tok',
    client: 'replica-test',
    onConnected,
    onStream: (stream) => stream.reset(TunnelCode.refused, 'not in this test'),
  });
}

describe('tunnels to every agent replica (ReplicaTunnels, real agents)', { timeout: 60_000 }, () => {
  const processes = new ProcessSet();
  const agents = new Map<string, LoopbackAgent>();
  let ready: string[] = [];
  let listing: 'ok' | 'fails' = 'ok';
  const events: string[] = [];

  function tunnels(id: string, replicas: 'all' | 'one'): ReplicaTunnels {
    const set = new ReplicaTunnels({
      readyPods: async () => {
        if (listing === 'fails') throw new Error('the apiserver answered 503');
        return [...ready];
      },
      tunnelTo: (pod) =>
        tunnelTo(
          pod,
          () => {
            const [host = '', port = ''] = (agents.get(pod)?.tunnel ?? '').split(':');
            return dial(host, Number(port));
          },
          async (connection) => {
            await connection.request('session.register', {
              id,
              filter: { headers: { 'x-dev': { exact: id } } },
              mode: 'steal',
              targetPort: 8080,
            });
          },
        ),
      replicas,
      intervalMs: 60_000,
    });
    set.on('added', (pod) => events.push(`${id} added ${pod}`));
    set.on('removed', (pod) => events.push(`${id} removed ${pod}`));
    set.on('failed', (error, pod) => events.push(`${id} failed ${pod ?? 'list'}: ${error.message}`));
    return set;
  }

  const holders = async (id: string) => {
    const held: string[] = [];
    for (const pod of pods)
      if ((await sessionsAt(agents.get(pod) as LoopbackAgent)).includes(id)) held.push(pod);
    return held;
  };

  before(async () => {
    for (const pod of pods) agents.set(pod, await loopbackAgent(processes, { DETOUR_AGENT_NAME: pod }));
  });

  after(async () => {
    await processes.stopAll();
  });

  it('opens a tunnel to every ready replica and registers the session on each', async () => {
    ready = ['agent-a', 'agent-b'];
    const set = tunnels('rt-all', 'all');
    try {
      await set.start();
      assert.equal(set.connections().length, 2, 'start waits for every replica that answers');
      assert.deepEqual(
        set
          .connections()
          .map((c) => c.peerName)
          .sort(),
        ['agent-a', 'agent-b'],
      );
      assert.deepEqual(await holders('rt-all'), ['agent-a', 'agent-b']);

      // agent-a goes away, agent-c becomes ready: one pass closes the one and opens the other.
      ready = ['agent-b', 'agent-c'];
      set.reconcile();
      await waitFor({ what: 'the tunnel to agent-c', timeoutMs: 5_000 }, () =>
        events.includes('rt-all added agent-c'),
      );
      assert.ok(events.includes('rt-all removed agent-a'), events.join('\n'));
      assert.deepEqual(set.replicas.sort(), ['agent-b', 'agent-c']);
      await waitFor(
        { what: 'agent-a to drop the session', timeoutMs: 5_000 },
        async () => !(await sessionsAt(agents.get('agent-a') as LoopbackAgent)).includes('rt-all'),
      );
      assert.deepEqual(await holders('rt-all'), ['agent-b', 'agent-c']);

      // The pods cannot be listed: said once, and what is up stays up.
      listing = 'fails';
      set.reconcile();
      await waitFor({ what: 'the failed listing reported', timeoutMs: 5_000 }, () =>
        events.some((e) => e === 'rt-all failed list: the apiserver answered 503'),
      );
      assert.equal(set.connections().length, 2);
    } finally {
      listing = 'ok';
      set.stop();
    }
  });

  it('with one tunnel, holds a single replica and moves when it goes away', async () => {
    ready = ['agent-a', 'agent-b', 'agent-c'];
    const set = tunnels('rt-one', 'one');
    try {
      const first = await set.start();
      set.reconcile();
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(set.connections().length, 1, 'one tunnel, however many replicas are ready');
      assert.deepEqual(await holders('rt-one'), [first.peerName]);
      ready = ready.filter((pod) => pod !== first.peerName);
      set.reconcile();
      await waitFor(
        { what: 'the tunnel to move', timeoutMs: 5_000 },
        () => set.replicas.length === 1 && set.replicas[0] !== first.peerName,
      );
      assert.ok(ready.includes(set.replicas[0] as string));
    } finally {
      set.stop();
    }
  });

  it('fails start with the refusal when no replica takes the tunnel', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    closed.close();
    const set = new ReplicaTunnels({
      readyPods: async () => ['gone'],
      tunnelTo: (pod) =>
        tunnelTo(
          pod,
          () => dial('127.0.0.1', port),
          async () => {},
        ),
      replicas: 'all',
    });
    await assert.rejects(set.start(), {
      code: 'DETOUR_AGENT_UNREACHABLE',
      message: /at gone \(ECONNREFUSED\)/,
    });
    set.stop();
  });
});
