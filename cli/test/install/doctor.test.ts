import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryCluster, type KubeObject, memoryClient } from '@detour/mesh-adapters';
import { FrameType, PROTOCOL_NAME } from '@detour/router/tunnel/protocol';
import { jsonFrame, scriptedAgent } from '@detour/router/tunnel/scripted-peer';
import { type Check, checkTunnel, formatCheck } from '../../src/install/doctor.ts';
import { dial } from '../../src/session/agent-tunnel.ts';

const pod: KubeObject = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'detour-agent-x', namespace: 'team-a' },
};
const service: KubeObject = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'detour-agent', namespace: 'team-a' },
  spec: { ports: [{ port: 8080 }] },
};

describe('doctor: the tunnel to an agent of another protocol version', () => {
  it('names both versions and the fix, skips the probe, and removes its Lease', async () => {
    const agent = await scriptedAgent(() =>
      jsonFrame(FrameType.helloAck, {
        protocol: PROTOCOL_NAME,
        version: 2,
        agent: 'detour-agent-x',
        release: '9.0.0',
      }),
    );
    const cluster = new InMemoryCluster();
    const checks: Check[] = [];
    try {
      await checkTunnel(
        {
          client: memoryClient(cluster),
          namespace: 'team-a',
          agentService: 'detour-agent',
          forward: async () => ({
            address: `127.0.0.1:${agent.port}`,
            dial: () => dial('127.0.0.1', agent.port),
            lastError: () => undefined,
            close: async () => {},
          }),
        },
        pod,
        service,
        (check) => checks.push(check),
      );
    } finally {
      agent.close();
    }
    assert.deepEqual(
      checks.map((c) => `${c.name} ${c.status}`),
      ['port-forward ok', 'tunnel fail', 'route-probe skip'],
    );
    const tunnel = checks[1] as Check;
    assert.match(
      tunnel.detail,
      /the agent speaks tunnel protocol v2 \(detour 9\.0\.0\) but this CLI speaks v1/,
    );
    assert.match(tunnel.fix ?? '', /use a CLI of detour 9\.0\.0.*detour install -n team-a/);
    assert.match(formatCheck(tunnel), /^FAIL {2}tunnel: .* — fix: /);
    assert.deepEqual(cluster.list(), [], "the doctor's session Lease is deleted");
  });
});
