// The sidecar image (tests/cluster/build/istio/proxy-image.sh) before tier 2 runs it as a pod: its own
// pilot-agent and Envoy, chrooted into the unpacked image as uid 1337 with the image's default paths,
// become a working STRICT-mTLS sidecar for a workload; and its istio-init command installs the
// traffic-capture rules in a network namespace. Needs root (network namespaces, chroot, mounts).
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { requireBinaries, useCluster } from '../../cluster.ts';
import { waitFor } from '../../wait.ts';
import {
  applyManifest,
  deleteStaleTestNamespaces,
  kubectlAdmin,
  startIstiod,
  stopIstiod,
  syncz,
} from '../istio.ts';
import { requireEnvoy, requireIstioBinaries, sidecarsDir } from '../paths.ts';
import { proxyImageArchive, requireProxyImage, unpackProxyImage } from '../proxy-image.ts';
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

const ns = `detour-img-${process.pid}`;
const host = `orders.${ns}.svc.cluster.local`;
const workloads = ['caller', 'orders', 'init'] as const;
const log = (line: string) => console.log(`# ${line}`);

it('has the sidecar image (built by tests/cluster/build/istio/proxy-image.sh)', () => {
  requireProxyImage();
});
it('has istiod, pilot-agent, Envoy and the tier-1 cluster binaries', () => {
  requireIstioBinaries();
  requireEnvoy();
  requireBinaries();
});

describe(`sidecar image ${proxyImageArchive.split('/').pop()}`, () => {
  let stopCluster: () => Promise<void> = async () => {};
  let istiodStarted = false;
  let net: WorkloadNet | undefined;
  let relay: XdsRelay | undefined;
  let app: ChildProcess | undefined;
  let rootfs = '';
  const sidecars: Sidecar[] = [];

  before(async () => {
    requireProxyImage();
    rootfs = unpackProxyImage(join(sidecarsDir, `image-${process.pid}`));
    stopCluster = await useCluster(log);
    istiodStarted = (await startIstiod({ log })).started;
    net = createWorkloadNet('img', workloads);
    await deleteStaleTestNamespaces();
    const entry = (name: string, labels: Record<string, string>, serviceAccount: string) =>
      workloadEntry(ns, name, net?.addresses[name] as string, labels, serviceAccount);
    await applyManifest(yamlDocs({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }));
    await applyManifest(
      yamlDocs(
        { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'caller', namespace: ns } },
        { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'orders', namespace: ns } },
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'orders', namespace: ns },
          spec: { selector: { app: 'orders' }, ports: [{ name: 'http', port: 8080 }] },
        },
        entry('caller', { app: 'caller' }, 'caller'),
        entry('orders', { app: 'orders' }, 'orders'),
        peerAuthentication(ns, 'STRICT'),
        clientSidecar(ns, 'caller', 8080),
        serverSidecar(ns, 'orders', 8080, 18080),
      ),
    );
    relay = await startXdsRelay();
    const out = openSync(join(sidecarsDir, `${ns}-orders-app.log`), 'a');
    const argv = net.exec('orders', [
      process.execPath,
      join(import.meta.dirname, '..', 'echo-app.ts'),
      'orders',
      '127.0.0.1:18080',
    ]);
    app = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', out, out] });
    closeSync(out);
    const common = { namespace: ns, xdsSocket: relay.socket };
    sidecars.push(
      await startSidecar({
        ...common,
        workload: 'orders',
        serviceAccount: 'orders',
        labels: { app: 'orders' },
        netns: net.names.orders as string,
        address: net.addresses.orders as string,
        rootfs,
      }),
    );
    sidecars.push(
      await startSidecar({
        ...common,
        workload: 'caller',
        serviceAccount: 'caller',
        labels: { app: 'caller' },
        netns: net.names.caller as string,
        address: net.addresses.caller as string,
      }),
    );
  });

  after(async () => {
    for (const sidecar of sidecars) await sidecar.stop();
    if (app?.exitCode === null) app.kill('SIGTERM');
    await relay?.stop();
    await kubectlAdmin(['delete', 'namespace', ns, '--ignore-not-found', '--wait=false']).catch(() => {});
    net?.remove();
    if (rootfs) rmSync(join(rootfs, '..'), { recursive: true, force: true });
    if (istiodStarted) await stopIstiod();
    await stopCluster();
  });

  it("runs as the image's own pilot-agent and Envoy, uid 1337, and ACKs all of istiod's config", async () => {
    const orders = sidecars[0] as Sidecar;
    const users = execFileSync(
      'ps',
      ['-o', 'uid=,args=', '--ppid', String(orders.agentPid), '-p', String(orders.agentPid)],
      {
        encoding: 'utf8',
      },
    );
    assert.match(users, /^\s*1337\s+\/usr\/local\/bin\/pilot-agent proxy sidecar/m);
    assert.match(users, /^\s*1337\s+\/usr\/local\/bin\/envoy -c \/etc\/istio\/proxy\/envoy-rev\.json/m);
    await waitFor(
      'istiod to see every response to the image sidecar ACKed',
      async () => {
        const entry = (await syncz()).find((e) => e.proxy === `orders.${ns}`);
        return (
          entry !== undefined &&
          ['cluster', 'listener', 'route', 'endpoint'].every(
            (type) => entry[`${type}_sent`] === entry[`${type}_acked`],
          )
        );
      },
      { timeoutMs: 30_000 },
    );
  });

  it('serves mutual TLS with a certificate from istiod through its SDS (caller → image sidecar, STRICT)', async () => {
    const caller = sidecars[1] as Sidecar;
    const reply = await waitFor(
      'a request from the caller through both sidecars',
      () => curlEcho(caller, 'http://127.0.0.1:8080/', { headers: [`host: ${host}:8080`] }),
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    assert.equal(reply.name, 'orders');
    assert.match(
      reply.headers['x-forwarded-client-cert'] ?? '',
      new RegExp(`By=spiffe://cluster.local/ns/${ns}/sa/orders`),
    );
    assert.match(
      reply.headers['x-forwarded-client-cert'] ?? '',
      new RegExp(`URI=spiffe://cluster.local/ns/${ns}/sa/caller`),
    );
  });

  it("installs istio-init's capture rules with the injected arguments (iptables from the image)", () => {
    const initNs = net?.names.init as string;
    // The arguments the injector gives istio-init (see the injected pod in istiod.test.ts).
    const args = [
      '-p',
      '15001',
      '-z',
      '15006',
      '-u',
      '1337',
      '-m',
      'REDIRECT',
      '-i',
      '*',
      '-x',
      '',
      '-b',
      '*',
    ];
    const script = [
      'set -e',
      'mount --make-rprivate /',
      'mount -t proc proc "$1/proc"',
      'mount --rbind /dev "$1/dev"',
      'shift',
      `exec chroot "${rootfs}" /usr/local/bin/pilot-agent istio-iptables "$@"`,
    ].join('; ');
    execFileSync(
      'ip',
      [
        'netns',
        'exec',
        initNs,
        'unshare',
        '-m',
        'sh',
        '-c',
        script,
        'sh',
        rootfs,
        ...args,
        '-d',
        '15090,15021,15020',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const rules = execFileSync('ip', ['netns', 'exec', initNs, 'iptables-save', '-t', 'nat'], {
      encoding: 'utf8',
    });
    assert.match(rules, /-A ISTIO_OUTPUT .*-m owner --uid-owner 1337/);
    assert.match(rules, /-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001/);
    assert.match(rules, /-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006/);
  });
});
