// The namespace agent with two replicas (manifests/agent's default) on the local cluster with Istio:
// the mesh balances a session's requests over both. The CLI holds a tunnel to each (both recorded
// on the session's Lease), so every request is served by the replica the mesh picked, with no hop.
// With --tunnels one, the replica without the tunnel forwards to the one with it. Then a replica's
// pod is deleted mid-traffic: the session with both tunnels goes on through the other and gets a
// tunnel to the replacement pod; a session held by the surviving replica alone sees no failed request.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { execInPod, kubeconfigPath, kubectl } from '../cluster/cluster.ts';
import { applyManifest } from '../cluster/istio/istio.ts';
import { peerAuthentication } from '../cluster/istio/test/mesh-fixtures.ts';
import { agentImage } from '../cluster/sample/sample.ts';
import { waitFor } from '../cluster/wait.ts';
import { freePort } from '../support/ports.ts';
import type { ManagedProcess } from '../support/processes.ts';
import { createAppNamespace, detourWith, ordersUrl, stealIn } from './app-namespace.ts';
import {
  callerGet,
  developerKubectl,
  execOrdersArgs,
  interrupt,
  median,
  sampleNamespace,
  startDetour,
  useSample,
} from './support.ts';

/** One answer of the caller pod's request loop. */
interface Sample {
  /** Wall clock when the request was sent (the pod shares the host's clock). */
  at: number;
  ms: number;
  status: number;
  version?: string;
  /** The agent replica that forwarded it to the holder (`x-detour-forwarded-by`), if one did. */
  via?: string;
  error?: string;
}

/**
 * Runs in the caller pod (through its sidecar): `count` requests to `url` with the headers, one
 * after the other, `gapMs` apart; one JSON line each.
 */
const loopScript = `
const [url, count, gapMs, headers] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), JSON.parse(process.argv[4])];
for (let i = 0; i < count; i++) {
  const at = Date.now();
  let line;
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    let version;
    try { version = JSON.parse(text).version; } catch {}
    line = { at, ms: Date.now() - at, status: res.status, version, via: res.headers.get('x-detour-forwarded-by') ?? undefined };
  } catch (error) {
    line = { at, ms: Date.now() - at, status: 0, error: error.message };
  }
  console.log(JSON.stringify(line));
  await new Promise((resolve) => setTimeout(resolve, gapMs));
}`;

async function callerLoop(
  dev: string,
  count: number,
  gapMs: number,
  url = 'http://orders:8080/',
): Promise<Sample[]> {
  const result = await execInPod(sampleNamespace, 'caller', [
    'node',
    '--input-type=module',
    '-e',
    loopScript,
    url,
    String(count),
    String(gapMs),
    JSON.stringify({ 'x-dev': dev }),
  ]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Sample);
}

interface LeaseJson {
  metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> };
}

/** The agent pods recorded as holding the session with `x-dev: dev` (its Lease's served-by). */
async function holdersOf(dev: string): Promise<string[]> {
  const leases = JSON.parse(
    await developerKubectl([
      '-n',
      sampleNamespace,
      'get',
      'leases',
      '-l',
      'app.kubernetes.io/managed-by=detour',
      '-o',
      'json',
    ]),
  ) as { items: LeaseJson[] };
  for (const lease of leases.items) {
    const served = lease.metadata.annotations?.['detour.dev/served-by'];
    if (served === undefined) continue;
    const { holders, filter } = JSON.parse(served) as { holders: Array<{ pod: string }>; filter: unknown };
    if (JSON.stringify(filter).includes(`"${dev}"`)) return holders.map((holder) => holder.pod).sort();
  }
  return [];
}

async function agentPods(
  namespace = sampleNamespace,
): Promise<Array<{ name: string; ip: string; deleting: boolean }>> {
  const pods = JSON.parse(
    (
      await kubectl('admin', [
        '-n',
        namespace,
        'get',
        'pods',
        '-l',
        'app.kubernetes.io/name=detour-agent',
        '-o',
        'json',
      ])
    ).stdout,
  ) as {
    items: Array<{ metadata: { name: string; deletionTimestamp?: string }; status: { podIP?: string } }>;
  };
  return pods.items.map((pod) => ({
    name: pod.metadata.name,
    ip: pod.status.podIP ?? '',
    deleting: pod.metadata.deletionTimestamp !== undefined,
  }));
}

/** An agent replica's inbound outcomes, from its metrics (fetched by the caller pod). */
async function outcomes(ip: string): Promise<Record<string, number>> {
  const answer = await callerGet(`http://${ip}:9090/metrics`);
  const text = String((answer.body as { text?: string }).text ?? '');
  return Object.fromEntries(
    [...text.matchAll(/^detour_inbound_requests_total\{outcome="([a-z_]+)"\} (\d+)$/gm)].map((m) => [
      m[1],
      Number(m[2]),
    ]),
  );
}

/**
 * Starts a steal of `x-dev: dev` on orders; resolves once the caller's requests reach the local app
 * and the Lease names `holders` replicas.
 */
async function startSession(dev: string, flags: string[] = [], holders = 2): Promise<ManagedProcess> {
  const local = await freePort();
  const cli = startDetour(execOrdersArgs(dev, local, ['--json', ...flags]));
  try {
    await waitFor(
      `x-dev: ${dev} answered by the local orders app`,
      async () => {
        if (cli.status) throw new Error(`detour exited: ${JSON.stringify(cli.status)}`);
        return (await callerGet('http://orders:8080/', { 'x-dev': dev })).body?.version === 'local';
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    await waitFor(
      `the Lease of ${dev} to name ${holders} replica(s)`,
      async () => (await holdersOf(dev)).length === holders,
      { timeoutMs: 15_000 },
    );
  } catch (error) {
    await cli.stop(10_000);
    throw new Error(`${(error as Error).message}\n${cli.tail(40)}`);
  }
  return cli;
}

/** Per replica, how its inbound outcomes moved while `work` ran. */
async function outcomesDuring<T>(
  work: () => Promise<T>,
): Promise<{ result: T; replicas: Array<{ pod: string; toPeer: number; forwarded: number }> }> {
  const pods = await agentPods();
  const before = await Promise.all(pods.map((pod) => outcomes(pod.ip)));
  const result = await work();
  const afterwards = await Promise.all(pods.map((pod) => outcomes(pod.ip)));
  return {
    result,
    replicas: pods.map((pod, i) => ({
      pod: pod.name,
      toPeer: (afterwards[i]?.to_peer ?? 0) - (before[i]?.to_peer ?? 0),
      forwarded: (afterwards[i]?.forwarded ?? 0) - (before[i]?.forwarded ?? 0),
    })),
  };
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

const served = (samples: Sample[]) => samples.filter((s) => s.status === 200 && s.version === 'local');

describe('two agent replicas: every request of a session reaches its tunnel, and a lost replica is survived (issue 13)', () => {
  const clis: ManagedProcess[] = [];

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    await waitFor(
      'two ready detour-agent replicas',
      async () => (await agentPods()).filter((pod) => !pod.deleting && pod.ip).length === 2,
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
  });

  after(async () => {
    for (const cli of clis) {
      interrupt(cli);
      await cli.stop(15_000);
    }
  });

  it('serves 100% of a session’s requests locally at the replica the mesh picked: a tunnel to each, no hop', async () => {
    const requests = 100;
    const cli = await startSession('rep-a');
    clis.push(cli);
    const { result: samples, replicas } = await outcomesDuring(() => callerLoop('rep-a', requests, 20));
    console.log(
      `# rep-a held by ${(await holdersOf('rep-a')).join(', ')}; per replica: ${JSON.stringify(replicas)}`,
    );
    assert.deepEqual(
      samples.filter((s) => !(s.status === 200 && s.version === 'local')),
      [],
      'every request answered by the local app',
    );
    assert.equal(samples.length, requests);
    console.log(
      `# caller -> orders route -> agent -> tunnel, in the pod's loop: p50 ${median(samples.map((s) => s.ms))} ms p99 ${percentile(
        samples.map((s) => s.ms),
        99,
      )} ms`,
    );
    assert.deepEqual(
      samples.filter((s) => s.via !== undefined),
      [],
      'no request went through the other replica',
    );
    assert.deepEqual(
      replicas.map((r) => r.toPeer),
      replicas.map(() => 0),
    );
    assert.ok(
      replicas.every((r) => r.forwarded > 0),
      'the mesh sent some to each replica, which delivered them to its own tunnel',
    );
    assert.equal(
      replicas.reduce((sum, r) => sum + r.forwarded, 0),
      requests,
    );
  });

  it('with --tunnels one, the replica without the tunnel forwards to the one with it', async () => {
    const requests = 100;
    const cli = await startSession('rep-one', ['--tunnels', 'one'], 1);
    const [holder] = await holdersOf('rep-one');
    try {
      const { result: samples, replicas } = await outcomesDuring(() => callerLoop('rep-one', requests, 20));
      console.log(`# rep-one held by ${holder}; per replica: ${JSON.stringify(replicas)}`);
      assert.deepEqual(
        samples.filter((s) => !(s.status === 200 && s.version === 'local')),
        [],
        'every request answered by the local app',
      );
      const hop = samples.filter((s) => s.via !== undefined).map((s) => s.ms);
      const direct = samples.filter((s) => s.via === undefined).map((s) => s.ms);
      console.log(
        `# straight to the holder ${direct.length} requests p50 ${median(direct)} ms p99 ${percentile(direct, 99)} ms; through the other replica ${hop.length} requests p50 ${median(hop)} ms p99 ${percentile(hop, 99)} ms`,
      );
      const other = replicas.find((r) => r.pod !== holder);
      assert.ok(
        other && other.toPeer > 0,
        'the mesh sent some to the replica without the tunnel, which forwarded them',
      );
      assert.equal(
        replicas.find((r) => r.pod === holder)?.forwarded,
        requests,
        'the holder delivered all of them',
      );
      assert.equal(hop.length, other?.toPeer, 'the answers the other replica forwarded say so');
    } finally {
      interrupt(cli);
      await cli.stop(15_000);
    }
  });

  it('survives the deletion of a replica: the session goes on through the other and joins the new pod', async () => {
    const cliA = clis[0] as ManagedProcess;
    const [deleted = '', survivor = ''] = await holdersOf('rep-a');
    // A second session with one tunnel, held by the replica that stays.
    let cliB: ManagedProcess | undefined;
    for (let attempt = 1; attempt <= 8 && !cliB; attempt++) {
      const cli = await startSession('rep-b', ['--tunnels', 'one'], 1);
      if ((await holdersOf('rep-b'))[0] === survivor) cliB = cli;
      else {
        interrupt(cli);
        await cli.stop(15_000);
      }
    }
    assert.ok(cliB, `rep-b never landed on ${survivor} (8 tries)`);
    clis.push(cliB);
    const stderrFrom = cliA.stderr.length;

    const loopA = callerLoop('rep-a', 300, 20);
    const loopB = callerLoop('rep-b', 300, 20);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const deletedAt = Date.now();
    const deletion = await kubectl('admin', [
      '-n',
      sampleNamespace,
      'delete',
      'pod',
      deleted,
      '--wait=false',
    ]);
    assert.equal(deletion.code, 0, deletion.stderr);
    const [a, b] = await Promise.all([loopA, loopB]);

    const failedA = a.filter((s) => !(s.status === 200 && s.version === 'local'));
    const added = (await cliA.waitForLine(
      'stderr',
      (json) => json.event === 'tunnel.replica-added',
      'the CLI of rep-a to open a tunnel to the replacement pod',
      90_000,
      stderrFrom,
    )) as Record<string, unknown>;
    const holders = await waitFor('the Lease of rep-a to name the survivor and the new pod', async () => {
      const now = await holdersOf('rep-a');
      return now.length === 2 && !now.includes(deleted) ? now : undefined;
    });
    const removed = cliA.stderr
      .slice(stderrFrom)
      .split('\n')
      .find((line) => line.includes('"tunnel.replica-removed"') && line.includes(deleted));
    console.log(
      `# deleting ${deleted} under rep-a (tunnels to both): ${failedA.length} of ${a.length} requests failed ${JSON.stringify(
        failedA.map((s) => ({ afterDeletionMs: s.at - deletedAt, error: s.error ?? s.status })),
      )}; new tunnel to ${String(added.pod)}; holders now ${holders.join(', ')}`,
    );
    assert.ok(removed, 'the CLI said the deleted replica is gone and closed its tunnel');
    // The stopping replica handed rep-a to the other holder at once and forwarded what the mesh
    // still sent it; its tunnel closed only after the drain.
    assert.deepEqual(failedA, [], 'no request of the session with tunnels to both failed');
    assert.equal(served(a).at(-1)?.at, a.at(-1)?.at, 'rep-a’s last request was served locally');
    assert.ok(holders.includes(survivor));
    assert.deepEqual(
      b.filter((s) => !(s.status === 200 && s.version === 'local')),
      [],
      'no request of the session on the other replica failed',
    );
  });
});

describe('two agent replicas under a STRICT PeerAuthentication: the hop between them is mutual TLS', () => {
  // A namespace of its own: STRICT there refuses every plain-text connection to its pods.
  const namespace = `detour-strict-${process.pid}`;
  let cli: ManagedProcess | undefined;

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    await createAppNamespace(namespace);
    const install = await detourWith(
      ['install', '-n', namespace, '--image', agentImage, '--json'],
      kubeconfigPath('admin'),
    );
    assert.equal(install.code, 0, install.stderr);
    await applyManifest(JSON.stringify(peerAuthentication(namespace, 'STRICT')));
  });

  after(async () => {
    if (cli) {
      interrupt(cli);
      await cli.stop(15_000);
    }
    await kubectl('admin', ['delete', 'namespace', namespace, '--ignore-not-found', '--wait=false']);
  });

  it('serves every request of a session locally, those the other replica forwarded too', async () => {
    const pods = await agentPods(namespace);
    assert.equal(pods.filter((pod) => !pod.deleting && pod.ip).length, 2, JSON.stringify(pods));
    // STRICT is in force: plain text straight to an agent pod (the caller's sidecar passes a bare
    // address through as is) is refused, as the hop was before the peers Service.
    await waitFor(
      'plain text to an agent pod to be refused',
      async () => {
        try {
          return (await callerGet(`http://${pods[0]?.ip}:8080/`)).status !== 404;
        } catch {
          return true;
        }
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    const dev = `strict-${process.pid}`;
    // One tunnel: the mesh sends some requests to the other replica, which forwards them.
    cli = await stealIn(namespace, dev, ['--tunnels', 'one']);
    const requests = 40;
    const samples = await callerLoop(dev, requests, 20, ordersUrl(namespace));
    const forwarded = samples.filter((s) => s.via !== undefined);
    console.log(
      `# STRICT: ${requests} requests, ${served(samples).length} answered locally, ${forwarded.length} forwarded by ${[...new Set(forwarded.map((s) => s.via))].join(', ')}`,
    );
    assert.deepEqual(
      samples.filter((s) => !(s.status === 200 && s.version === 'local')),
      [],
      'every request answered by the local app',
    );
    assert.equal(samples.length, requests);
    assert.ok(
      forwarded.length > 0,
      'the mesh sent some to the replica without the tunnel, which forwarded them',
    );
  });
});
