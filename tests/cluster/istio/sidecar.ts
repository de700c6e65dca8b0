import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterError } from '../errors.ts';
import { waitFor } from '../wait.ts';
import { kubectlAdmin } from './istio.ts';
import { bootstrapTemplateFile, istioBinaryPath, requireEnvoy, sidecarsDir } from './paths.ts';
import { clusterId, istiodPorts, istioNamespace, trustDomain } from './settings.ts';

/**
 * A real Istio sidecar (pilot-agent + upstream Envoy) run as a host process inside a network
 * namespace, for a workload that has no pod yet: what tier 3 proves before tier 2 runs pods. The
 * workload is known to istiod through a WorkloadEntry (same address, labels, service account); the
 * sidecar authenticates with a service-account token (audience istio-ca), gets its certificate from
 * istiod's CA through pilot-agent's SDS, and its config over XDS. No iptables: traffic is addressed
 * to Envoy's listeners (interception mode NONE, with a Sidecar resource binding them).
 */
export interface SidecarSpec {
  /** Workload name, e.g. orders-v1 (the WorkloadEntry's name and the proxy's pod name). */
  workload: string;
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
  /** Network namespace and the workload's address in it. */
  netns: string;
  address: string;
  /** Unix socket of the host relay to istiod's XDS port (see startXdsRelay). */
  xdsSocket: string;
  /**
   * Run the image's own pilot-agent and Envoy, chrooted into this unpacked root filesystem as uid 1337
   * with the image's default paths (see proxy-image.ts), instead of the host's binaries.
   */
  rootfs?: string;
  /** `router` runs the proxy as a gateway (pilot-agent proxy router) instead of a sidecar. */
  proxyType?: 'sidecar' | 'router';
}

export interface Sidecar {
  readonly spec: SidecarSpec;
  readonly agentPid: number;
  readonly log: string;
  /** GET on Envoy's admin interface (127.0.0.1:15000 inside the namespace). */
  admin(path: string): Promise<string>;
  /** Runs a command inside the workload's namespace; resolves with stdout (rejects on non-zero). */
  exec(argv: readonly string[]): Promise<string>;
  stop(): Promise<void>;
}

const relayScript = join(import.meta.dirname, 'relay.ts');
const envoyAdminPort = 15000;

function execText(argv: readonly string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      argv[0] as string,
      argv.slice(1),
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`${argv.join(' ')}: ${stderr || error.message}`)) : resolve(stdout),
    );
  });
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** Direct children of a process (Envoy is pilot-agent's). */
function childrenOf(pid: number): number[] {
  try {
    const tasks = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return tasks.split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. Only pids this module started. */
async function stopPid(pid: number | undefined, graceMs: number): Promise<void> {
  if (pid === undefined || !isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      await sleep(100);
      return;
    }
    await sleep(50);
  }
}

function spawnLogged(
  argv: readonly string[],
  log: string,
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): ChildProcess {
  const out = openSync(log, 'a');
  const child = spawn(argv[0] as string, argv.slice(1), { ...options, stdio: ['ignore', out, out] });
  closeSync(out);
  if (child.pid === undefined)
    throw new ClusterError('CLUSTER_START_FAILED', `could not start ${argv.join(' ')}`);
  return child;
}

export interface XdsRelay {
  readonly socket: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Host relays of runs that died: each run leaves relay-<run pid>.pid; the relay is stopped when that
 * run is gone and the pid still names this relay script.
 */
async function stopStaleRelays(): Promise<void> {
  for (const file of readdirSync(sidecarsDir)) {
    const owner = Number(/^relay-(\d+)\.pid$/.exec(file)?.[1]);
    if (!owner || owner === process.pid || isAlive(owner)) continue;
    const pid = Number.parseInt(readFileSync(join(sidecarsDir, file), 'utf8'), 10);
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      // gone
    }
    if (cmdline.includes(relayScript)) await stopPid(pid, 2000);
    rmSync(join(sidecarsDir, file), { force: true });
    rmSync(join(sidecarsDir, `istiod-xds-${owner}.sock`), { force: true });
  }
}

/**
 * Working directories, logs and unpacked images of runs that died (kept until now for their failure
 * logs). Named <something>-<run pid>-..., relay-<run pid>.log or image-<run pid>.
 */
function removeStaleRunFiles(): void {
  for (const entry of readdirSync(sidecarsDir)) {
    const match = /^detour-[a-z]+-(\d+)-|^relay-(\d+)\.log$|^image-(\d+)$/.exec(entry);
    const owner = Number(match?.[1] ?? match?.[2] ?? match?.[3]);
    if (owner && owner !== process.pid && !isAlive(owner)) {
      rmSync(join(sidecarsDir, entry), { recursive: true, force: true });
    }
  }
}

/** Host side of the relay: a Unix socket forwarding to istiod's XDS/CA port on loopback. */
export async function startXdsRelay(): Promise<XdsRelay> {
  mkdirSync(sidecarsDir, { recursive: true });
  await stopStaleRelays();
  removeStaleRunFiles();
  const socket = join(sidecarsDir, `istiod-xds-${process.pid}.sock`);
  const child = spawnLogged(
    [process.execPath, relayScript, `unix:${socket}`, `tcp:127.0.0.1:${istiodPorts.secureGrpc}`],
    join(sidecarsDir, `relay-${process.pid}.log`),
  );
  await waitFor(
    'the host XDS relay socket',
    () => {
      try {
        readFileSync(socket);
        return false;
      } catch (error) {
        // A listening Unix socket cannot be read as a file: ENXIO means it exists.
        return (error as NodeJS.ErrnoException).code === 'ENXIO';
      }
    },
    { timeoutMs: 10_000 },
  );
  const pid = child.pid as number;
  const pidFile = join(sidecarsDir, `relay-${process.pid}.pid`);
  writeFileSync(pidFile, `${pid}\n`);
  return {
    socket,
    pid,
    stop: async () => {
      await stopPid(pid, 2000);
      rmSync(pidFile, { force: true });
    },
  };
}

/** A service-account token istiod accepts (audience istio-ca), from the apiserver's TokenRequest API. */
export async function serviceAccountToken(namespace: string, serviceAccount: string): Promise<string> {
  return (
    await kubectlAdmin([
      'create',
      'token',
      serviceAccount,
      '-n',
      namespace,
      '--audience=istio-ca',
      '--duration=2h',
    ])
  ).trim();
}

/** The mesh root certificate istiod publishes into every namespace (ConfigMap istio-ca-root-cert). */
export async function meshRootCert(namespace: string): Promise<string> {
  return waitFor(
    `ConfigMap ${namespace}/istio-ca-root-cert (written by istiod)`,
    async () => {
      const pem = await kubectlAdmin([
        'get',
        'configmap',
        'istio-ca-root-cert',
        '-n',
        namespace,
        '-o',
        'jsonpath={.data.root-cert\\.pem}',
      ]);
      return pem.includes('BEGIN CERTIFICATE') ? pem : undefined;
    },
    { timeoutMs: 30_000 },
  );
}

/** Starts pilot-agent (which starts Envoy) for a workload inside its namespace. */
export async function startSidecar(spec: SidecarSpec): Promise<Sidecar> {
  const envoy = spec.rootfs ? '/usr/local/bin/envoy' : requireEnvoy();
  const dir = join(sidecarsDir, `${spec.namespace}-${spec.workload}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'var', 'run', 'secrets', 'tokens'), { recursive: true });
  mkdirSync(join(dir, 'var', 'run', 'secrets', 'istio'), { recursive: true });
  writeFileSync(
    join(dir, 'var', 'run', 'secrets', 'tokens', 'istio-token'),
    await serviceAccountToken(spec.namespace, spec.serviceAccount),
  );
  writeFileSync(
    join(dir, 'var', 'run', 'secrets', 'istio', 'root-cert.pem'),
    await meshRootCert(spec.namespace),
  );
  mkdirSync(join(dir, 'etc', 'istio', 'proxy'), { recursive: true });
  // Paths as pilot-agent sees them: under the workload's directory, or the image's own in a chroot
  // (where the directory's secrets and proxy config are bind-mounted).
  const seen = (path: string) => (spec.rootfs ? path : join(dir, path));
  const rootCert = seen('/var/run/secrets/istio/root-cert.pem');
  const log = join(dir, 'sidecar.log');
  const inNs = (argv: readonly string[]) => ['ip', 'netns', 'exec', spec.netns, ...argv];

  // Inside the namespace, istiod is at 127.0.0.1:15012 through the relay pair.
  const relay = spawnLogged(
    inNs([
      process.execPath,
      relayScript,
      `tcp:127.0.0.1:${istiodPorts.secureGrpc}`,
      `unix:${spec.xdsSocket}`,
    ]),
    join(dir, 'relay.log'),
  );
  const proxyConfig = {
    discoveryAddress: `127.0.0.1:${istiodPorts.secureGrpc}`,
    binaryPath: envoy,
    configPath: seen('/etc/istio/proxy'),
    // The image keeps the template at pilot-agent's default path (./var/lib/istio/envoy/, cwd /).
    ...(spec.rootfs ? {} : { proxyBootstrapTemplatePath: bootstrapTemplateFile }),
    proxyAdminPort: envoyAdminPort,
    statusPort: 15020,
    drainDuration: '2s',
    terminationDrainDuration: '1s',
    concurrency: 1,
    controlPlaneAuthPolicy: 'MUTUAL_TLS',
  };
  const env: NodeJS.ProcessEnv = {
    PATH: spec.rootfs ? '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' : process.env.PATH,
    HOME: spec.rootfs ? '/tmp' : dir,
    PROXY_CONFIG: JSON.stringify(proxyConfig),
    POD_NAME: spec.workload,
    POD_NAMESPACE: spec.namespace,
    INSTANCE_IP: spec.address,
    SERVICE_ACCOUNT: spec.serviceAccount,
    TRUST_DOMAIN: trustDomain,
    ISTIO_META_CLUSTER_ID: clusterId,
    ISTIO_META_MESH_ID: trustDomain,
    ISTIO_META_WORKLOAD_NAME: spec.workload,
    ISTIO_METAJSON_LABELS: JSON.stringify(spec.labels),
    // No iptables in the namespace: listeners are bound where the Sidecar resource says.
    ISTIO_META_INTERCEPTION_MODE: 'NONE',
    // istiod is dialled by address; its certificate names istiod.istio-system.svc.
    ISTIOD_SAN: `istiod.${istioNamespace}.svc`,
    XDS_ROOT_CA: rootCert,
    CA_ROOT_CA: rootCert,
    PILOT_CERT_PROVIDER: 'istiod',
    JWT_POLICY: 'third-party-jwt',
  };
  const agentArgs = [
    'proxy',
    spec.proxyType ?? 'sidecar',
    `--domain=${spec.namespace}.svc.cluster.local`,
    '--proxyLogLevel=warning',
    '--log_output_level=default:info',
  ];
  let argv: string[];
  if (spec.rootfs) {
    // A private mount namespace holds what a container runtime would mount: /proc, /dev, the token and
    // root certificate, a writable /etc/istio/proxy. Every step execs in place: the pid stays pilot-agent's.
    // uid 1337 must be able to reopen its stdout (the mesh's access log is /dev/stdout; Envoy NACKs a
    // listener whose log file it cannot open): in a pod stdout is the runtime's pipe, here a file.
    writeFileSync(log, '');
    execFileSync('chown', ['-R', '1337:1337', join(dir, 'var'), join(dir, 'etc'), log]);
    for (const mountPoint of ['proc', 'dev', 'var/run/secrets', 'etc/istio/proxy']) {
      mkdirSync(join(spec.rootfs, mountPoint), { recursive: true });
    }
    const script = [
      'set -e',
      'mount --make-rprivate /',
      'mount -t proc proc "$1/proc"',
      'mount --rbind /dev "$1/dev"',
      'mount --bind "$2/var/run/secrets" "$1/var/run/secrets"',
      'mount --bind "$2/etc/istio/proxy" "$1/etc/istio/proxy"',
      'shift 2',
      `exec chroot --userspec=1337:1337 "${spec.rootfs}" /usr/local/bin/pilot-agent "$@"`,
    ].join('; ');
    argv = inNs(['unshare', '-m', 'sh', '-c', script, 'sh', spec.rootfs, dir, ...agentArgs]);
  } else {
    argv = inNs([istioBinaryPath('pilot-agent'), ...agentArgs]);
  }
  let agent: ChildProcess;
  try {
    agent = spawnLogged(argv, log, { cwd: dir, env });
  } catch (error) {
    await stopPid(relay.pid, 2000);
    throw error;
  }
  const agentPid = agent.pid as number;
  const admin = (path: string) =>
    execText(inNs(['curl', '-sS', '--max-time', '2', `http://127.0.0.1:${envoyAdminPort}${path}`]), 5000);
  const sidecar: Sidecar = {
    spec,
    agentPid,
    log,
    admin,
    exec: (argv) => execText(inNs(argv), 15_000),
    stop: async () => {
      const envoys = childrenOf(agentPid);
      await stopPid(agentPid, 8000);
      for (const pid of envoys) await stopPid(pid, 2000);
      await stopPid(relay.pid, 2000);
    },
  };
  try {
    await waitFor(
      `the sidecar of ${spec.workload} to be ready (Envoy /ready LIVE)`,
      async () => {
        if (!isAlive(agentPid)) {
          const tail = readFileSync(log, 'utf8').trimEnd().split('\n').slice(-30).join('\n');
          throw new ClusterError('CLUSTER_START_FAILED', `pilot-agent for ${spec.workload} exited:\n${tail}`);
        }
        return (await admin('/ready')).trim() === 'LIVE';
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  } catch (error) {
    await sidecar.stop();
    throw error;
  }
  return sidecar;
}
