import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { ClusterError } from './errors.ts';
import { writeKubeconfig } from './kubeconfig.ts';
import {
  clusterDns,
  ensureHostLink,
  ensureNetns,
  exposeSpecs,
  importImages,
  nodeDown,
  nodeImageFile,
  nodeIp,
  nodeName,
  nodeOwnedHere,
  nodeSpecs,
  requireNodeTools,
  saveHostSysctls,
  sock,
  writeNodeConfig,
} from './node.ts';
import {
  type Binary,
  binaryPath,
  buildScript,
  crdFiles,
  etcdDataDir,
  imageDir,
  kubeconfigDir,
  logDir,
  pidDir,
  pkiDir,
  repoRoot,
  stateDir,
  tier1Binaries,
  tier2Binaries,
} from './paths.ts';
import { type CertRequest, ensurePki } from './pki.ts';
import { ports } from './ports.ts';
import {
  memoryMiB,
  type ProcessSpec,
  runningPid,
  startedWithOtherArgs,
  startProcess,
  stopOutdatedForwarder,
  stopProcess,
} from './processes.ts';
import { versions } from './versions.ts';
import { waitFor } from './wait.ts';

export { ports };
/** Service and pod ranges inside 198.18.0.0/15 (the project's own test range); the node is 198.18.0.2. */
export const serviceCidr = '198.19.0.0/20';
export const podCidr = '198.18.128.0/17';
export const apiserverUrl = `https://127.0.0.1:${ports.apiserver}`;

export type Identity = 'admin' | 'developer';

export interface ClusterOptions {
  /** Progress lines (default: console.log). */
  log?: (line: string) => void;
  /** Build missing binaries with scripts/cluster-build.sh (default true); false fails instead. */
  build?: boolean;
  /** 1: API only (default). 2: also a node (containerd, kubelet, kube-proxy, scheduler). Env DETOUR_CLUSTER_TIER. */
  tier?: 1 | 2;
}

const certs: CertRequest[] = [
  {
    name: 'apiserver',
    commonName: 'kube-apiserver',
    usage: 'server',
    altNames: [
      'IP:127.0.0.1',
      'IP:198.19.0.1',
      `IP:${nodeIp}`,
      'DNS:localhost',
      'DNS:kubernetes',
      'DNS:kubernetes.default',
      'DNS:kubernetes.default.svc',
      'DNS:kubernetes.default.svc.cluster.local',
    ],
  },
  { name: 'admin', commonName: 'detour-admin', organization: 'system:masters', usage: 'client' },
  // The developer identity belongs to no group: all it may do comes from manifests/rbac.
  { name: 'developer', commonName: 'detour-dev', usage: 'client' },
  { name: 'controller-manager', commonName: 'system:kube-controller-manager', usage: 'client' },
  // The apiserver's identity towards aggregated apiservers; also what makes it publish the
  // requestheader CA that kube-controller-manager's delegated authentication insists on reading.
  { name: 'front-proxy-client', commonName: 'front-proxy-client', usage: 'client' },
  {
    name: 'apiserver-kubelet-client',
    commonName: 'kube-apiserver-kubelet-client',
    organization: 'system:masters',
    usage: 'client',
  },
  { name: 'scheduler', commonName: 'system:kube-scheduler', usage: 'client' },
  { name: 'kube-proxy', commonName: 'system:kube-proxy', usage: 'client' },
];

/** The node's certificates name the node, whose name depends on the host (see nodeName). */
function nodeCerts(name: string): CertRequest[] {
  return [
    {
      name: 'kubelet-client',
      commonName: `system:node:${name}`,
      organization: 'system:nodes',
      usage: 'client',
    },
    {
      name: 'kubelet',
      commonName: name,
      usage: 'server',
      altNames: [`IP:${nodeIp}`, 'IP:127.0.0.1', `DNS:${name}`, 'DNS:localhost'],
    },
  ];
}

/** Path of the kubeconfig for an identity (exists once clusterUp has run). */
export function kubeconfigPath(who: Identity): string {
  return join(kubeconfigDir, `${who}.yaml`);
}

/** A client-node KubeConfig for an identity. */
export function kubeConfig(who: Identity): KubeConfig {
  const path = kubeconfigPath(who);
  if (!existsSync(path)) {
    throw new ClusterError(
      'CLUSTER_NOT_RUNNING',
      `no kubeconfig at ${path}: start the cluster with npm run cluster:up`,
    );
  }
  const config = new KubeConfig();
  config.loadFromFile(path);
  return config;
}

function spec(name: Binary, args: string[]): ProcessSpec {
  return { name, binary: binaryPath(name), args };
}

function pki(file: string): string {
  return join(pkiDir, file);
}

function etcdSpec(): ProcessSpec {
  const client = `http://127.0.0.1:${ports.etcdClient}`;
  const peer = `http://127.0.0.1:${ports.etcdPeer}`;
  // Plain HTTP on loopback only: nothing but the apiserver on this machine talks to it.
  return spec('etcd', [
    '--name=detour-local',
    `--data-dir=${etcdDataDir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=detour-local=${peer}`,
    '--listen-metrics-urls=',
    '--log-level=warn',
  ]);
}

function apiserverSpec(): ProcessSpec {
  return spec('kube-apiserver', [
    `--etcd-servers=http://127.0.0.1:${ports.etcdClient}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${ports.apiserver}`,
    '--authorization-mode=Node,RBAC',
    '--anonymous-auth=false',
    `--client-ca-file=${pki('ca.crt')}`,
    `--tls-cert-file=${pki('apiserver.crt')}`,
    `--tls-private-key-file=${pki('apiserver.key')}`,
    `--service-account-key-file=${pki('sa.pub')}`,
    `--service-account-signing-key-file=${pki('sa.key')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-cluster-ip-range=${serviceCidr}`,
    // The `kubernetes` Service's endpoint is the node address, where (tier 2) a forwarder inside the
    // node's namespace carries connections to this loopback listener. Endpoints may not be loopback.
    `--advertise-address=${nodeIp}`,
    '--endpoint-reconciler-type=lease',
    '--enable-admission-plugins=NodeRestriction',
    `--kubelet-client-certificate=${pki('apiserver-kubelet-client.crt')}`,
    `--kubelet-client-key=${pki('apiserver-kubelet-client.key')}`,
    // The node's address, routed from the host over the node's veth: no relay on the way to the kubelet.
    '--kubelet-preferred-address-types=InternalIP',
    `--requestheader-client-ca-file=${pki('ca.crt')}`,
    '--requestheader-allowed-names=front-proxy-client',
    '--requestheader-username-headers=X-Remote-User',
    '--requestheader-group-headers=X-Remote-Group',
    '--requestheader-extra-headers-prefix=X-Remote-Extra-',
    `--proxy-client-cert-file=${pki('front-proxy-client.crt')}`,
    `--proxy-client-key-file=${pki('front-proxy-client.key')}`,
    '--allow-privileged=true',
    '--profiling=false',
    '--v=0',
  ]);
}

function controllerManagerSpec(): ProcessSpec {
  const kubeconfig = join(kubeconfigDir, 'controller-manager.yaml');
  return spec('kube-controller-manager', [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${ports.controllerManager}`,
    '--leader-elect=false',
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${pki('sa.key')}`,
    `--root-ca-file=${pki('ca.crt')}`,
    `--cluster-signing-cert-file=${pki('ca.crt')}`,
    `--cluster-signing-key-file=${pki('ca.key')}`,
    `--service-cluster-ip-range=${serviceCidr}`,
    `--cluster-cidr=${podCidr}`,
    '--allocate-node-cidrs=true',
    '--profiling=false',
    '--v=0',
  ]);
}

/** Start order; stop runs it backwards. */
function components(): ProcessSpec[] {
  return [etcdSpec(), apiserverSpec(), controllerManagerSpec()];
}

function get(url: string, tlsClient: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = tlsClient
      ? {
          ca: readFileSync(pki('ca.crt')),
          cert: readFileSync(pki('admin.crt')),
          key: readFileSync(pki('admin.key')),
        }
      : // The controller-manager serves a self-signed certificate of its own; this is a loopback health probe.
        { rejectUnauthorized: false };
    const send = url.startsWith('https:') ? request : httpRequest;
    const req = send(url, { ...options, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in 2 s`)));
    req.on('error', reject);
    req.end();
  });
}

function lastLogLines(name: string, count = 15): string {
  try {
    return readFileSync(join(logDir, `${name}.log`), 'utf8')
      .trimEnd()
      .split('\n')
      .slice(-count)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

/** Waits for an HTTP health endpoint to answer 200, failing early (with its log) if the process died. */
async function waitHealthy(
  component: ProcessSpec,
  url: string,
  tlsClient: boolean,
  timeoutMs: number,
): Promise<void> {
  await waitFor(
    `${component.name} at ${url}`,
    async () => {
      if (runningPid(pidDir, component) === undefined) {
        throw new ClusterError(
          'CLUSTER_START_FAILED',
          `${component.name} exited; last lines of ${join(logDir, `${component.name}.log`)}:\n${lastLogLines(component.name)}`,
        );
      }
      const res = await get(url, tlsClient);
      return res.status === 200;
    },
    { timeoutMs },
  ).catch((error: unknown) => {
    if (error instanceof ClusterError && error.code === 'CLUSTER_TIMEOUT') {
      throw new ClusterError('CLUSTER_START_FAILED', `${error.message}\n${lastLogLines(component.name)}`);
    }
    throw error;
  });
}

/** Names of tier-1 binaries that have not been built yet. */
export function missingBinaries(): Binary[] {
  return tier1Binaries.filter((name) => !existsSync(binaryPath(name)));
}

/** Throws CLUSTER_BINARIES_MISSING (naming `npm run cluster:up`) unless every tier-1 binary is built. */
export function requireBinaries(): void {
  const missing = missingBinaries();
  if (missing.length > 0) {
    throw new ClusterError(
      'CLUSTER_BINARIES_MISSING',
      `cluster binaries not built: ${missing.map(binaryPath).join(', ')}. ` +
        'Run `npm run cluster:up` once (builds them from Go modules, 5 to 15 min the first time on 2 cores).',
    );
  }
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the cluster's own kubectl as an identity. Never throws on a non-zero exit: check `code`. */
export function kubectl(who: Identity, args: string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      binaryPath('kubectl'),
      [`--kubeconfig=${kubeconfigPath(who)}`, ...args],
      { maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as unknown as number) : 0, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function kubectlOk(who: Identity, args: string[]): Promise<string> {
  const result = await kubectl(who, args);
  if (result.code !== 0) {
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
  }
  return result.stdout;
}

/**
 * Runs a build script, its output relayed to the log; rejects with CLUSTER_START_FAILED on failure,
 * the script's last lines in the message (they name the failed step and its fix, scripts/steps.sh),
 * so the reason is there even when the log goes nowhere.
 */
export function runScript(log: (line: string) => void, script: string, args: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const last: string[] = [];
    const relay = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        log(`  ${line}`);
        if (last.push(line) > 20) last.shift();
      }
    };
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(
            new ClusterError(
              'CLUSTER_START_FAILED',
              `bash ${script} ${args.join(' ')} exited with ${code}; its last lines:\n${last.join('\n')}`,
            ),
          ),
    );
  });
}

/** Runs one named step of bringing the cluster up or down, logging its start and duration. */
export async function step<T>(
  log: (line: string) => void,
  name: string,
  run: () => Promise<T> | T,
): Promise<T> {
  const started = performance.now();
  log(`- ${name} ...`);
  const result = await run();
  log(`  ${name}: ${((performance.now() - started) / 1000).toFixed(1)}s`);
  return result;
}

export interface UpResult {
  /** Components this call started (empty when everything already ran). */
  started: string[];
  seconds: number;
}

/**
 * Brings the tier-1 cluster up: builds missing binaries, creates certificates and kubeconfigs, starts
 * etcd, kube-apiserver and kube-controller-manager, installs the Istio and Gateway API CRDs and the
 * developer RBAC. Idempotent: running components are left alone.
 */
export async function clusterUp(options: ClusterOptions = {}): Promise<UpResult> {
  const log = options.log ?? console.log;
  const t0 = performance.now();
  const started: string[] = [];

  const missing = missingBinaries();
  const crdsMissing = crdFiles().some((file) => !existsSync(file));
  if (missing.length > 0 || crdsMissing) {
    if (options.build === false) requireBinaries();
    await step(log, `build ${[...missing, ...(crdsMissing ? ['crds'] : [])].join(', ')}`, () =>
      runScript(log, buildScript),
    );
  }

  await step(log, 'certificates and kubeconfigs', () => {
    ensurePki(pkiDir, certs);
    writeKubeconfig(kubeconfigPath('admin'), apiserverUrl, pkiDir, 'detour-admin', 'admin');
    writeKubeconfig(kubeconfigPath('developer'), apiserverUrl, pkiDir, 'detour-dev', 'developer');
    writeKubeconfig(
      join(kubeconfigDir, 'controller-manager.yaml'),
      apiserverUrl,
      pkiDir,
      'system:kube-controller-manager',
      'controller-manager',
    );
  });

  const [etcd, apiserver, controllerManager] = components() as [ProcessSpec, ProcessSpec, ProcessSpec];
  const health: Array<[ProcessSpec, string, boolean, number]> = [
    [etcd, `http://127.0.0.1:${ports.etcdClient}/health`, false, 30_000],
    [apiserver, `${apiserverUrl}/readyz`, true, 120_000],
    [controllerManager, `https://127.0.0.1:${ports.controllerManager}/healthz`, false, 60_000],
  ];
  for (const [component, url, tlsClient, timeoutMs] of health) {
    await step(log, `start ${component.name}`, async () => {
      const { pid, started: fresh } = startProcess(pidDir, logDir, component);
      if (fresh) started.push(component.name);
      log(
        `  ${component.name} pid ${pid}${fresh ? '' : ' (already running)'}, log ${join(logDir, `${component.name}.log`)}`,
      );
      if (!fresh && startedWithOtherArgs(pid, component)) {
        log(
          `  warning: ${component.name} runs with older flags; npm run cluster:down && npm run cluster:up applies the new ones`,
        );
      }
      await waitHealthy(component, url, tlsClient, timeoutMs);
    });
  }

  await step(log, 'CRDs (Istio, Gateway API) and RBAC', async () => {
    for (const file of crdFiles()) {
      await kubectlOk('admin', ['apply', '--server-side', '--force-conflicts', '-f', file]);
    }
    await kubectlOk('admin', ['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
    await kubectlOk('admin', [
      'apply',
      '--server-side',
      '--force-conflicts',
      '-f',
      join(repoRoot, 'manifests', 'rbac'),
      '-f',
      join(import.meta.dirname, 'manifests'),
    ]);
  });

  const tier = options.tier ?? (process.env.DETOUR_CLUSTER_TIER === '2' ? 2 : 1);
  if (tier >= 2) started.push(...(await nodeUp(log, options.build !== false)));

  const seconds = (performance.now() - t0) / 1000;
  log(`cluster up in ${seconds.toFixed(1)}s (kubernetes v${versions.kubernetes}, etcd v${versions.etcd})`);
  log(`  admin:     export KUBECONFIG=${kubeconfigPath('admin')}`);
  log(`  developer: export KUBECONFIG=${kubeconfigPath('developer')}`);
  return { started, seconds };
}

function nodeKubeconfig(name: string): string {
  return join(kubeconfigDir, `${name}.yaml`);
}

async function allNodeSpecs(): Promise<ProcessSpec[]> {
  return nodeSpecs(nodeKubeconfig, await nodeName());
}

/** Tier 2: the node in its own network namespace; returns the components it started. */
async function nodeUp(log: (line: string) => void, build: boolean): Promise<string[]> {
  const started: string[] = [];
  const missing = tier2Binaries.filter((name) => !existsSync(binaryPath(name)));
  const images = [
    `pause-${versions.pause}.oci.tar`,
    `netcheck-${versions.netcheck}.oci.tar`,
    `coredns-${versions.coredns}.oci.tar`,
    nodeImageFile,
  ];
  if (missing.length > 0 || images.some((file) => !existsSync(join(imageDir, file)))) {
    if (!build) {
      throw new ClusterError(
        'CLUSTER_BINARIES_MISSING',
        `tier-2 binaries not built (${missing.join(', ')}): run npm run cluster:up -- --tier=2`,
      );
    }
    await step(log, `build ${[...missing, 'images'].join(', ')}`, () =>
      runScript(log, buildScript, [
        ...missing,
        'pause-image',
        'netcheck-image',
        'coredns-image',
        'node-image',
      ]),
    );
  }
  requireNodeTools();
  const name = await nodeName();
  let kubeletStartedAt: number | undefined;
  await step(log, `node ${name}: certificates, network namespace, config`, () => {
    ensurePki(pkiDir, nodeCerts(name));
    writeKubeconfig(nodeKubeconfig('kubelet'), apiserverUrl, pkiDir, `system:node:${name}`, 'kubelet-client');
    writeKubeconfig(nodeKubeconfig('kube-proxy'), apiserverUrl, pkiDir, 'system:kube-proxy', 'kube-proxy');
    writeKubeconfig(nodeKubeconfig('scheduler'), apiserverUrl, pkiDir, 'system:kube-scheduler', 'scheduler');
    ensureNetns();
    ensureHostLink();
    writeNodeConfig(pki, name);
    saveHostSysctls();
  });
  for (const spec of nodeSpecs(nodeKubeconfig, name)) {
    await step(log, `start ${spec.name}`, async () => {
      // Whole seconds: the API server's timestamps have no fraction.
      const before = Math.floor(Date.now() / 1000) * 1000;
      const replaced = await stopOutdatedForwarder(pidDir, spec);
      const { pid, started: fresh } = startProcess(pidDir, logDir, spec);
      if (fresh && !replaced) started.push(spec.name);
      if (fresh && spec.name === 'kubelet') kubeletStartedAt = before;
      log(
        `  ${spec.name} pid ${pid}${fresh ? '' : ' (already running)'}, log ${join(logDir, `${spec.name}.log`)}`,
      );
      const alive = () => {
        if (runningPid(pidDir, spec) === undefined) {
          throw new ClusterError('CLUSTER_START_FAILED', `${spec.name} exited:\n${lastLogLines(spec.name)}`);
        }
      };
      if (spec.name === 'containerd') {
        await waitFor(
          'containerd socket',
          () => {
            alive();
            return existsSync(sock.containerd);
          },
          {
            timeoutMs: 30_000,
          },
        );
        log(`  imported ${importImages().join(', ')}`);
      } else {
        await sleep(300);
        alive();
      }
    });
  }
  // A Node object left in etcd by an earlier run still says Ready: after starting the kubelet, only a
  // status it posted since counts (it posts one at start; later ones only every 5 min if unchanged).
  const since = kubeletStartedAt ?? 0;
  await step(log, `node ${name} Ready`, () =>
    waitFor(
      `node ${name} to be Ready (see ${join(logDir, 'kubelet.log')})`,
      async () => {
        const out = await kubectl('admin', [
          'get',
          'node',
          name,
          '-o',
          'jsonpath={range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}',
        ]);
        const [status, heartbeat] = out.stdout.trim().split(' ');
        return status === 'True' && heartbeat !== undefined && Date.parse(heartbeat) >= since;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    ),
  );
  await step(log, 'cluster DNS (CoreDNS) Ready', async () => {
    const manifest = readFileSync(join(import.meta.dirname, 'manifests-node', 'coredns.yaml'), 'utf8')
      .replaceAll('@COREDNS_IMAGE@', versions.corednsImage)
      .replaceAll('@CLUSTER_DNS@', clusterDns);
    const applied = await kubectl(
      'admin',
      ['apply', '--server-side', '--force-conflicts', '-f', '-'],
      manifest,
    );
    if (applied.code !== 0) {
      throw new ClusterError('CLUSTER_COMMAND_FAILED', `applying CoreDNS failed:\n${applied.stderr}`);
    }
    await kubectlOk('admin', [
      '-n',
      'kube-system',
      'rollout',
      'status',
      'deployment/coredns',
      '--timeout=120s',
    ]);
  });
  return started;
}

export interface DownOptions {
  log?: (line: string) => void;
  /** Also delete etcd's data, certificates and kubeconfigs (the whole state dir). */
  purge?: boolean;
}

/** Stops every component this cluster started (by pid file), last started first. */
export async function clusterDown(options: DownOptions = {}): Promise<string[]> {
  const log = options.log ?? console.log;
  const stopped: string[] = [];
  const node = await allNodeSpecs();
  // Only this state dir's node: another cluster's (DETOUR_CLUSTER_DIR) is left running.
  if (nodeOwnedHere() || node.some((spec) => runningPid(pidDir, spec) !== undefined)) {
    await nodeDown(node, (line) => {
      stopped.push(line);
      log(line);
    });
  }
  for (const component of components().reverse()) {
    const pid = await stopProcess(pidDir, component);
    if (pid !== undefined) {
      stopped.push(component.name);
      log(`stopped ${component.name} (pid ${pid})`);
    }
  }
  if (stopped.length === 0) log('cluster: nothing was running');
  if (options.purge) {
    rmSync(stateDir, { recursive: true, force: true });
    log(`removed ${stateDir}`);
  }
  return stopped;
}

export interface ComponentStatus {
  name: string;
  pid?: number;
  rssMiB?: number;
  peakMiB?: number;
}

export async function clusterStatus(): Promise<ComponentStatus[]> {
  const node = (await allNodeSpecs()).filter((spec) => runningPid(pidDir, spec) !== undefined);
  return [...components(), ...node].map((component) => {
    const pid = runningPid(pidDir, component);
    if (pid === undefined) return { name: component.name };
    const memory = memoryMiB(pid);
    return { name: component.name, pid, rssMiB: memory?.rss, peakMiB: memory?.peak };
  });
}

/**
 * For test suites: requires built binaries (fails loudly naming `npm run cluster:up` otherwise),
 * starts the cluster if it is not running, and returns a function that stops it again only if this
 * call started it.
 */
export async function useCluster(
  log: (line: string) => void = () => {},
  tier: 1 | 2 = 1,
): Promise<() => Promise<void>> {
  requireBinaries();
  const { started } = await clusterUp({ log, build: false, tier });
  return async () => {
    if (started.length > 0) await clusterDown({ log });
  };
}

export interface ExposeOptions {
  /** Service name (also names the forwarders). */
  name: string;
  namespace: string;
  /** The host loopback port the component listens on. */
  hostPort: number;
  /** Service port (default hostPort). */
  port?: number;
  /** Port on the node address inside the namespace (default hostPort). */
  nodePort?: number;
}

/**
 * Tier 2: makes a process on the host's loopback (e.g. istiod) reachable from pods as the Service
 * `<name>.<namespace>.svc`: two forwarders (see exposeSpecs) and a selector-less Service whose
 * EndpointSlice points at the node address. Stopped by clusterDown, or by unexposeHostPort.
 */
export async function exposeHostPort(options: ExposeOptions): Promise<void> {
  const nodePort = options.nodePort ?? options.hostPort;
  for (const spec of exposeSpecs(options.name, options.hostPort, nodePort)) {
    await stopOutdatedForwarder(pidDir, spec);
    startProcess(pidDir, logDir, spec);
  }
  const manifest = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: options.name, namespace: options.namespace },
        spec: { ports: [{ name: 'tcp', port: options.port ?? options.hostPort, targetPort: nodePort }] },
      },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: `${options.name}-host`,
          namespace: options.namespace,
          labels: { 'kubernetes.io/service-name': options.name },
        },
        addressType: 'IPv4',
        endpoints: [{ addresses: [nodeIp], conditions: { ready: true } }],
        ports: [{ name: 'tcp', port: nodePort, protocol: 'TCP' }],
      },
    ],
  };
  const applied = await kubectl('admin', ['apply', '-f', '-'], JSON.stringify(manifest));
  if (applied.code !== 0) {
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `exposing ${options.name} failed:\n${applied.stderr}`);
  }
  await waitFor(`forwarders for ${options.name}`, () =>
    exposeSpecs(options.name, options.hostPort, nodePort).every(
      (spec) => runningPid(pidDir, spec) !== undefined,
    ),
  );
}

/** Stops the forwarders exposeHostPort started (the Service stays; delete it or its namespace). */
export async function unexposeHostPort(name: string): Promise<void> {
  for (const spec of exposeSpecs(name, 0, 0)) await stopProcess(pidDir, spec);
}

/** Runs a command in a pod's container through the API server (kubectl exec), as an identity. */
export function execInPod(
  namespace: string,
  pod: string,
  command: string[],
  options: { container?: string; who?: Identity } = {},
): Promise<CommandResult> {
  const container = options.container ? ['-c', options.container] : [];
  return kubectl(options.who ?? 'admin', ['exec', '-n', namespace, pod, ...container, '--', ...command]);
}

/** Waits until every pod matched (a name, `kind/name`, or `-l selector`) is Ready; throws CLUSTER_TIMEOUT otherwise. */
export async function waitForPodsReady(
  namespace: string,
  pods: string[],
  timeoutMs = 120_000,
): Promise<void> {
  const result = await kubectl('admin', [
    'wait',
    '-n',
    namespace,
    '--for=condition=Ready',
    ...pods.flatMap((pod) =>
      pod.startsWith('-l') ? ['-l', pod.slice(2).trim()] : [pod.includes('/') ? pod : `pod/${pod}`],
    ),
    `--timeout=${Math.ceil(timeoutMs / 1000)}s`,
  ]);
  if (result.code !== 0) {
    throw new ClusterError(
      'CLUSTER_TIMEOUT',
      `pods ${pods.join(', ')} in ${namespace} not Ready: ${result.stderr.trim()}`,
    );
  }
}
