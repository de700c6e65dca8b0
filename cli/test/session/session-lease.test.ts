// A session's Lease is written by two parties: the CLI renews it, and the agent replica holding the
// tunnel records itself on it (detour.dev/served-by). A renewal after the agent's write must keep
// renewing, and keep the agent's annotation.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  buildLease,
  InMemoryCluster,
  LEASE_ANNOTATIONS,
  type Lease,
  memoryClient,
} from '@detour/mesh-adapters';
import { createReporter } from '../../src/reporter.ts';
import { SessionLease } from '../../src/session/session-lease.ts';

describe('SessionLease renewal', () => {
  it('renews a Lease the agent annotated meanwhile, keeping the annotation', async () => {
    const cluster = new InMemoryCluster();
    const client = memoryClient(cluster);
    const lease = buildLease(
      {
        sessionId: 's1',
        target: { namespace: 'ns', host: 'orders.ns.svc.cluster.local', port: 8080 },
        mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: 's1' } } } },
        agent: { name: 'detour-agent', namespace: 'ns', port: 8080 },
        holder: 'me@laptop',
        lease: { name: 'detour-s1', namespace: 'ns' },
      },
      new Date(),
      { durationSeconds: 3 },
    );
    const warnings: string[] = [];
    const reporter = { ...createReporter(true), warn: (event: string) => warnings.push(event) };
    const session = await SessionLease.create(client, lease, reporter);
    const read = () =>
      cluster.list().find((o) => o.kind === 'Lease' && o.metadata.name === 'detour-s1') as Lease;
    const agentCopy = read();
    agentCopy.metadata.annotations = {
      ...agentCopy.metadata.annotations,
      [LEASE_ANNOTATIONS.servedBy]: '{"pod":"a"}',
    };
    await client.replace(agentCopy);
    const annotatedAt = read().spec?.renewTime;
    // Renewed every third of its 3 s: once, at least, within 1.5 s.
    await sleep(1_500);
    const renewed = read();
    await session.delete();
    assert.deepEqual(warnings, []);
    assert.ok(
      Date.parse(renewed.spec?.renewTime ?? '') > Date.parse(annotatedAt ?? ''),
      `renewed after the agent's write (${annotatedAt} → ${renewed.spec?.renewTime})`,
    );
    assert.equal(renewed.metadata.annotations?.[LEASE_ANNOTATIONS.servedBy], '{"pod":"a"}');
    assert.equal(cluster.list().length, 0, 'deleted at the end');
  });
});
