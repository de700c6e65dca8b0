// A session's Lease is written by two parties: the CLI renews it, and the agent replica holding the
// tunnel records itself on it (detour.dev/served-by). A renewal after the agent's write must keep
// renewing, and keep the agent's annotation. A CLI that could not renew for a while (its machine
// asleep: here its event loop blocked) hears of it: renewed past expiry, or the Lease found gone.
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
import { type LeaseInterruption, SessionLease } from '../../src/session/session-lease.ts';

/** A 3 s session Lease (renewed every second). */
function sessionLease(): Lease {
  return buildLease(
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
}

/** What a suspended process does to its timers: nothing runs for `ms`. */
function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('SessionLease renewal', () => {
  const setUp = () => {
    const cluster = new InMemoryCluster();
    const warnings: string[] = [];
    const reporter = { ...createReporter(true), warn: (event: string) => warnings.push(event) };
    const read = () =>
      cluster.list().find((o) => o.kind === 'Lease' && o.metadata.name === 'detour-s1') as Lease | undefined;
    return { cluster, client: memoryClient(cluster), warnings, reporter, read };
  };

  it('renews a Lease the agent annotated meanwhile, keeping the annotation', async () => {
    const { cluster, client, warnings, reporter, read: readLease } = setUp();
    const session = await SessionLease.create(client, sessionLease(), reporter);
    const read = () => readLease() as Lease;
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

  it('renewed past its expiry: says so once, with how long it went unrenewed, and goes on', async () => {
    const { client, warnings, reporter, read } = setUp();
    const heard: LeaseInterruption[] = [];
    const session = await SessionLease.create(client, sessionLease(), reporter, (i) => heard.push(i));
    blockEventLoop(3_500);
    await sleep(2_500);
    const renewed = read();
    await session.delete();
    assert.deepEqual(warnings, []);
    assert.equal(heard.length, 1, JSON.stringify(heard));
    assert.equal(heard[0]?.gone, false);
    assert.ok((heard[0]?.sinceRenewalMs ?? 0) >= 3_500, JSON.stringify(heard));
    assert.ok(Date.parse(renewed?.spec?.renewTime ?? '') > Date.now() - 2_000, 'renewed after the pause');
  });

  it('found gone (ended by the agent or a janitor): says so once, then neither renews nor deletes', async () => {
    const { cluster, client, warnings, reporter, read } = setUp();
    const heard: LeaseInterruption[] = [];
    const session = await SessionLease.create(client, sessionLease(), reporter, (i) => heard.push(i));
    const ended = read() as Lease;
    await client.delete(
      { apiVersion: ended.apiVersion, kind: ended.kind, namespace: 'ns', name: 'detour-s1' },
      { uid: ended.metadata.uid },
    );
    await sleep(2_500);
    assert.deepEqual(
      heard.map((i) => i.gone),
      [true],
    );
    assert.equal(session.ref, undefined, 'no Lease held any more');
    // Someone creates a Lease of that name again: this one no longer touches it.
    await client.create(sessionLease());
    const other = read();
    await sleep(1_500);
    await session.delete();
    assert.deepEqual(read(), other, 'the other Lease is neither renewed nor deleted');
    assert.deepEqual(warnings, []);
    assert.equal(cluster.list().length, 1);
  });
});
