/**
 * The harness itself: the namespaces are isolated as the other tests assume, stale ones from dead
 * runs are swept, and a machine that cannot create namespaces fails loudly instead of passing.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { ports, Rig } from '../support/detour.ts';
import { addresses, namespaceExists, requireNetns, sweepStaleNamespaces } from '../support/netns.ts';
import { waitFor, withTimeout } from '../support/wait.ts';

describe('test harness: network namespaces', { timeout: 60_000 }, () => {
  let rig: Rig;

  before(() => {
    rig = new Rig('hn');
  });

  after(async () => {
    await rig?.close();
  });

  test('laptop reaches the pod, the cluster reaches the pod, the laptop does not reach the cluster', async () => {
    await rig.startApp('pod', 'pod-app', { port: ports.inbound, host: '0.0.0.0' });
    await rig.startApp('cluster', 'cluster-app', { port: ports.remoteApp, host: addresses.cluster });
    const fromLaptop = await rig.curl('laptop', ['-sS', `http://${addresses.pod}:${ports.inbound}/`], 5_000);
    assert.equal(JSON.parse(fromLaptop.stdout).app, 'pod-app');
    const fromCluster = await rig.curl(
      'cluster',
      ['-sS', `http://${addresses.pod}:${ports.inbound}/`],
      5_000,
    );
    assert.equal(JSON.parse(fromCluster.stdout).app, 'pod-app');
    const podToCluster = await rig.curl(
      'pod',
      ['-sS', `http://${addresses.cluster}:${ports.remoteApp}/`],
      5_000,
    );
    assert.equal(JSON.parse(podToCluster.stdout).app, 'cluster-app');
    const laptopToCluster = await rig.curl(
      'laptop',
      ['-sS', `http://${addresses.cluster}:${ports.remoteApp}/`],
      3_000,
    );
    assert.notEqual(
      laptopToCluster.code,
      0,
      'the laptop must not reach the cluster except through the agent',
    );
  });

  test('a stale dt-* namespace of a dead run is swept with its processes; a live run’s are kept', async () => {
    // A pid far above pid_max's default is never alive.
    const stale = 'dt-4999999-stale-pod';
    execFileSync('ip', ['netns', 'add', stale]);
    assert.ok(namespaceExists(stale));
    // A process the dead run left running inside it.
    const orphan = spawn('ip', ['netns', 'exec', stale, 'sleep', '300'], { detached: true, stdio: 'ignore' });
    await waitFor({ what: 'the orphan to run in the stale namespace', timeoutMs: 5_000 }, () =>
      execFileSync('ip', ['netns', 'pids', stale], { encoding: 'utf8' }).includes(String(orphan.pid)),
    );
    const removed = sweepStaleNamespaces();
    assert.ok(removed.includes(stale), `swept: ${removed.join(', ')}`);
    assert.ok(!namespaceExists(stale));
    const [, signal] = await withTimeout(once(orphan, 'exit'), 5_000, 'the orphan to be killed by the sweep');
    assert.equal(signal, 'SIGKILL');
    assert.ok(namespaceExists(rig.topology.names.pod), 'this run’s namespaces are kept');
  });

  test('without root, the tests fail loudly naming the reason and the fix', () => {
    assert.throws(
      () => requireNetns({ uid: 1000 }),
      /need root to create network namespaces \(uid is 1000\)\. Fix: run the integration tests as root/,
    );
  });
});
