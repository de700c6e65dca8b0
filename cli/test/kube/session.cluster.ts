// A whole session against the real kube-apiserver (tier 1) as the developer identity: the target
// resolved, the route written into the VirtualService, requests through the agent reaching the local
// app, and on exit the VirtualService restored to the byte; after a SIGKILL, `detour clean` from
// another process reverts it once the lease expires.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { canonicalJson } from '@detour/mesh-adapters';
import { AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { kubeConfig, kubeconfigPath, useCluster } from '../../../tests/cluster/cluster.ts';

const run = promisify(execFile);
const cli = join(import.meta.dirname, '..', '..', 'src', 'main.ts');
const agentMain = join(import.meta.dirname, '..', '..', '..', 'agent', 'src', 'main.ts');
const namespace = `detour-session-${process.pid}`;
const vsApi = { group: 'networking.istio.io', version: 'v1', namespace, plural: 'virtualservices' };
const localApp = `require('node:http').createServer((q, s) => s.end(JSON.stringify({ app: 'local', payments: process.env.PAYMENTS_URL, dev: q.headers['x-dev'] }))).listen(Number(process.argv[1]), '127.0.0.1')`;

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  return port;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe('a session against the real apiserver', () => {
  let stopCluster: () => Promise<void>;
  let agent: ChildProcess;
  let agentLog = '';
  let tunnelPort = '';
  let inboundPort = '';
  const custom = () => kubeConfig('admin').makeApiClient(CustomObjectsApi);
  const leases = () => kubeConfig('admin').makeApiClient(CoordinationV1Api);
  const readVs = async () =>
    (await custom().getNamespacedCustomObject({ ...vsApi, name: 'orders' })) as {
      spec: { http: { name?: string }[] };
      metadata: Record<string, unknown>;
    };
  let originalSpec = '';

  before(async () => {
    stopCluster = await useCluster();
    const admin = kubeConfig('admin');
    const core = admin.makeApiClient(CoreV1Api);
    await core.createNamespace({
      body: { metadata: { name: namespace, labels: { 'istio-injection': 'enabled' } } },
    });
    await admin.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'orders' },
        spec: {
          selector: { matchLabels: { app: 'orders' } },
          template: {
            metadata: { labels: { app: 'orders' } },
            spec: {
              containers: [
                {
                  name: 'orders',
                  image: 'detour/sample:dev',
                  ports: [{ name: 'http', containerPort: 8080 }],
                  env: [{ name: 'PAYMENTS_URL', value: 'http://payments:8080' }],
                },
              ],
            },
          },
        },
      },
    });
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'orders' },
        spec: { selector: { app: 'orders' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'detour-agent' },
        spec: {
          selector: { 'app.kubernetes.io/name': 'detour-agent' },
          ports: [{ name: 'http', port: 8080 }],
        },
      },
    });
    await custom().createNamespacedCustomObject({
      ...vsApi,
      body: {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'orders' },
        spec: {
          hosts: ['orders'],
          http: [
            {
              name: 'canary',
              match: [{ headers: { 'x-canary': { exact: 'yes' } } }],
              route: [{ destination: { host: 'orders', subset: 'v2' } }],
            },
            { name: 'default', retries: { attempts: 3 }, route: [{ destination: { host: 'orders' } }] },
          ],
        },
      },
    });
    originalSpec = canonicalJson((await readVs()).spec);
    agent = spawn(process.execPath, [agentMain], {
      env: {
        ...process.env,
        DETOUR_TUNNEL_LISTEN: '127.0.0.1:0',
        DETOUR_INBOUND_LISTEN: '127.0.0.1:0',
        DETOUR_ADMIN_LISTEN: '127.0.0.1:0',
        DETOUR_TOKENS: 'tok',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    agent.stderr?.on('data', (chunk: Buffer) => {
      agentLog += chunk;
    });
    const ready = await until(
      'the agent to start',
      async () => /"tunnel":"127\.0\.0\.1:(\d+)","inbound":"127\.0\.0\.1:(\d+)"/.exec(agentLog) ?? undefined,
    );
    [, tunnelPort = '', inboundPort = ''] = ready;
  });

  after(async () => {
    if (agent.exitCode === null) {
      agent.kill('SIGTERM');
      await once(agent, 'exit');
    }
    await kubeConfig('admin').makeApiClient(CoreV1Api).deleteNamespace({ name: namespace });
    await stopCluster();
  });

  function startSession(
    session: string,
    localPort: number,
    leaseSeconds = 30,
  ): { child: ChildProcess; stderr: () => string } {
    let stderr = '';
    const child = spawn(
      process.execPath,
      [
        cli,
        'exec',
        '--target',
        'deploy/orders',
        '--namespace',
        namespace,
        '--agent',
        `127.0.0.1:${tunnelPort}`,
        '--token',
        'tok',
        '--header',
        'x-dev=dev-a',
        '--port',
        `8080:${localPort}`,
        '--session',
        session,
        '--lease-seconds',
        String(leaseSeconds),
        '--json',
        '--',
        process.execPath,
        '-e',
        localApp,
        String(localPort),
      ],
      // Its own process group, so a kill takes the CLI and the app it runs together (a laptop dying).
      {
        env: { ...process.env, KUBECONFIG: kubeconfigPath('developer') },
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: true,
      },
    );
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    return { child, stderr: () => stderr };
  }

  it('routes, serves with the target env, and restores the VirtualService exactly on exit', async () => {
    const { child, stderr } = startSession('s1', await freePort());
    const vs = await until('the detour route to be first in the VirtualService', async () =>
      (await readVs()).spec.http[0]?.name === 'detour-s1' ? readVs() : undefined,
    );
    assert.deepEqual(
      vs.spec.http.map((route) => route.name),
      ['detour-s1', 'canary', 'default'],
    );
    assert.match(stderr(), /"event":"mesh.detected".*routing with istio/);
    const lease = await leases().readNamespacedLease({ name: 'detour-s1', namespace });
    assert.equal(lease.spec?.leaseDurationSeconds, 30);

    const answer = await until(
      'a request with x-dev: dev-a to reach the local app through the agent',
      async () => {
        const response = await fetch(`http://127.0.0.1:${inboundPort}/`, {
          headers: { 'x-dev': 'dev-a', host: `orders.${namespace}.svc.cluster.local` },
        });
        return response.ok ? ((await response.json()) as Record<string, string>) : undefined;
      },
    );
    assert.deepEqual(answer, { app: 'local', payments: 'http://payments:8080', dev: 'dev-a' });

    child.kill('SIGTERM');
    await once(child, 'exit');
    assert.equal(canonicalJson((await readVs()).spec), originalSpec);
    await assert.rejects(leases().readNamespacedLease({ name: 'detour-s1', namespace }), /404|not found/i);
    assert.match(stderr(), /"event":"route.reverted"/);
  });

  it('after a SIGKILL, `detour clean` from another process reverts the route once the lease expires', async () => {
    const { child } = startSession('s2', await freePort(), 5);
    await until('the route of s2', async () =>
      (await readVs()).spec.http[0]?.name === 'detour-s2' ? true : undefined,
    );
    process.kill(-(child.pid as number), 'SIGKILL');
    await once(child, 'exit');
    const killedAt = Date.now();
    assert.equal(
      (await readVs()).spec.http[0]?.name,
      'detour-s2',
      'the route outlives the killed CLI until its lease expires',
    );

    const env = { ...process.env, KUBECONFIG: kubeconfigPath('developer') };
    const early = await run(process.execPath, [cli, 'clean', '--json'], { env });
    assert.match(early.stderr, /0 dead session\(s\) reverted/, 'a live lease is left alone');
    await until(
      'the janitor to revert s2',
      async () => {
        const { stderr } = await run(process.execPath, [cli, 'clean', '--json'], { env });
        return /reverted session s2 .*its lease expired/.test(stderr) ? true : undefined;
      },
      30_000,
    );
    const revertedAfterMs = Date.now() - killedAt;
    assert.equal(canonicalJson((await readVs()).spec), originalSpec);
    assert.ok(
      revertedAfterMs >= 4_000,
      `reverted ${revertedAfterMs} ms after the kill: not before the lease expired`,
    );
    process.stderr.write(
      `# SIGKILLed session reverted by detour clean ${revertedAfterMs} ms after the kill (lease 5 s)\n`,
    );
  });

  it('refuses a second session on the same header value, naming the holder, and leaves the cluster as it was', async () => {
    const { child } = startSession('s3', await freePort());
    await until('the route of s3', async () =>
      (await readVs()).spec.http[0]?.name === 'detour-s3' ? true : undefined,
    );
    const before = canonicalJson((await readVs()).spec);
    const second = await run(
      process.execPath,
      [
        cli,
        'exec',
        '--target',
        'deploy/orders',
        '--namespace',
        namespace,
        '--agent',
        `127.0.0.1:${tunnelPort}`,
        '--token',
        'tok',
        '--header',
        'x-dev=dev-a',
        '--port',
        '8080:18934',
        '--session',
        's4',
        '--',
        'true',
      ],
      { env: { ...process.env, KUBECONFIG: kubeconfigPath('developer') } },
    ).catch((error: { code: number; stderr: string }) => error);
    assert.equal((second as { code: number }).code, 2);
    assert.match((second as { stderr: string }).stderr, /held by session s3/);
    assert.equal(canonicalJson((await readVs()).spec), before);
    await assert.rejects(leases().readNamespacedLease({ name: 'detour-s4', namespace }), /404|not found/i);
    child.kill('SIGTERM');
    await once(child, 'exit');
    assert.equal(canonicalJson((await readVs()).spec), originalSpec);
  });
});
