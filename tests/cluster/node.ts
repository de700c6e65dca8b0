import { execFileSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterError } from './errors.ts';
import { binaryPath, imageDir, nodeDir, pidDir, stateDir } from './paths.ts';
import { ports } from './ports.ts';
import { type ProcessSpec, stopProcess, systemToolsEnv } from './processes.ts';
import { versions } from './versions.ts';

/**
 * Tier 2: one node. containerd, kubelet, kube-proxy and every pod live in the network namespace
 * `detour-node`, which this code creates: its only addresses are loopback, the node address
 * 198.18.0.2 (a veth end) and the pod bridge 198.18.128.1/24. The control plane stays on the
 * host's loopback and dials the kubelet over the veth (ensureHostLink); the node reaches the
 * apiserver through socat and a Unix socket (reachable from any network namespace), so nothing
 * listens on a host address other than 127.0.0.1.
 */
export const nodeNetns = 'detour-node';
export const nodeIp = '198.18.0.2';
/** The host's address on the node's link: where the kubelet's replies to the apiserver go. */
export const hostIp = '198.18.0.1';
const hostLink = 'detour0-peer';
export const podSubnet = '198.18.128.0/24';
export const clusterDns = '198.19.0.10';

export const sock = {
  containerd: join(nodeDir, 'containerd', 'containerd.sock'),
  apiserver: join(nodeDir, 'apiserver.sock'),
};

/**
 * The node's name: the host's when it resolves to loopback (this VM's /etc/hosts maps it to
 * 127.0.0.1), else `localhost`. The apiserver dials the node's InternalIP, so the name only has to
 * stay what clusters made before chose: it is in the kubelet's certificate and Node object.
 */
export async function nodeName(): Promise<string> {
  const name = hostname().toLowerCase();
  try {
    const { address } = await lookup(name, { family: 4 });
    if (address.startsWith('127.')) return name;
  } catch {
    // falls through
  }
  return 'localhost';
}

function run(command: string, args: string[], input?: string): string {
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      input,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: systemToolsEnv,
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ClusterError(
        'CLUSTER_TOOL_MISSING',
        `${command} is not installed (tier 2 needs iproute2, socat, runc)`,
      );
    }
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `${command} ${args.join(' ')} failed: ${stderr.trim()}`);
  }
}

/** The Debian packages the node needs, checked before anything starts. */
const nodeTools: Array<[string, string]> = [
  ['/usr/sbin/runc', 'runc'],
  ['/usr/bin/socat', 'socat'],
  ['/usr/bin/nsenter', 'util-linux'],
  ['/usr/sbin/ip', 'iproute2'],
  ['/usr/sbin/iptables', 'iptables'],
  ['/usr/sbin/conntrack', 'conntrack'],
  ['/usr/lib/cni/bridge', 'containernetworking-plugins'],
  ['/usr/lib/cni/host-local', 'containernetworking-plugins'],
  ['/usr/lib/cni/loopback', 'containernetworking-plugins'],
  ['/usr/lib/cni/portmap', 'containernetworking-plugins'],
];

export function requireNodeTools(): void {
  const missing = nodeTools.filter(([path]) => !existsSync(path));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map(([, pkg]) => pkg))].join(' ');
    throw new ClusterError(
      'CLUSTER_TOOL_MISSING',
      `tier 2 needs ${missing.map(([path]) => path).join(', ')}: apt-get install -y ${packages}`,
    );
  }
  if (process.getuid?.() !== 0) {
    throw new ClusterError('CLUSTER_TOOL_MISSING', 'tier 2 needs root (network namespace, mounts, cgroups)');
  }
}

export function netnsExists(): boolean {
  return existsSync(`/run/netns/${nodeNetns}`);
}

/**
 * The node is one per machine (the namespace name, the kubepods cgroups and the shims are global),
 * while state dirs (DETOUR_CLUSTER_DIR) can be several: this file names the state dir whose cluster
 * owns the node, so another cluster's up or down leaves it alone.
 */
const ownerFile = `/run/${nodeNetns}.owner`;

export function nodeOwner(): string | undefined {
  try {
    return readFileSync(ownerFile, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** True when the node (if any) belongs to this state dir, or to nobody that still says so. */
export function nodeOwnedHere(): boolean {
  const owner = nodeOwner();
  return owner === stateDir || (owner === undefined && netnsExists());
}

/** Creates the node's network namespace (idempotent), refusing one another cluster owns. */
export function ensureNetns(): void {
  const owner = nodeOwner();
  if (owner !== undefined && owner !== stateDir && netnsExists()) {
    throw new ClusterError(
      'CLUSTER_START_FAILED',
      `the tier-2 node belongs to the cluster in ${owner}: stop it first (DETOUR_CLUSTER_DIR=${owner} npm run cluster:down)`,
    );
  }
  writeFileSync(ownerFile, `${stateDir}\n`);
  if (netnsExists()) return;
  run('ip', ['netns', 'add', nodeNetns]);
  try {
    const ip = (...args: string[]) => run('ip', ['-n', nodeNetns, ...args]);
    ip('link', 'set', 'lo', 'up');
    // The node's "NIC": a veth pair whose other end, hostLink, is the control plane's way in
    // (ensureHostLink). The default route lets the kernel pick a source address for Service VIPs
    // before kube-proxy's DNAT; the host does not forward, so nothing leaves through it.
    ip('link', 'add', 'detour0', 'type', 'veth', 'peer', 'name', hostLink);
    ip('addr', 'add', `${nodeIp}/32`, 'dev', 'detour0');
    ip('link', 'set', 'detour0', 'up');
    ip('route', 'add', 'default', 'dev', 'detour0');
    const sysctl = (key: string, value: string) =>
      run('ip', ['netns', 'exec', nodeNetns, 'sysctl', '-q', '-w', `${key}=${value}`]);
    sysctl('net.ipv4.ip_forward', '1');
    // Service VIPs between two pods on the same bridge need the bridge's traffic to pass iptables.
    sysctl('net.bridge.bridge-nf-call-iptables', '1');
  } catch (error) {
    run('ip', ['netns', 'delete', nodeNetns]);
    throw error;
  }
}

/**
 * The host end of the node's veth, in the host's namespace with hostIp and a route to nodeIp, so
 * the apiserver dials the kubelet (exec, logs, port-forward) straight, as in a real cluster: no
 * relay on a port-forward's path. Idempotent; a namespace an older checkout made still holds the
 * end, which is moved out here. It goes with the namespace (a veth pair dies with either end).
 */
export function ensureHostLink(): void {
  if (!hostLinkExists()) run('ip', ['-n', nodeNetns, 'link', 'set', hostLink, 'netns', String(process.pid)]);
  run('ip', ['addr', 'replace', `${hostIp}/32`, 'dev', hostLink]);
  run('ip', ['link', 'set', hostLink, 'up']);
  run('ip', ['route', 'replace', `${nodeIp}/32`, 'dev', hostLink, 'src', hostIp]);
  // Pods may not reach the host's address; the node's own processes (the kubelet's replies) may.
  const podsToHost = ['iif', 'cni0', 'to', `${hostIp}/32`, 'prohibit'];
  if (!run('ip', ['-n', nodeNetns, 'rule', 'show']).includes('prohibit')) {
    run('ip', ['-n', nodeNetns, 'rule', 'add', ...podsToHost]);
  }
}

function hostLinkExists(): boolean {
  try {
    execFileSync('ip', ['link', 'show', hostLink], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function writeFile(path: string, content: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
  return path;
}

/** Node-side configuration files; returns their paths. */
export function writeNodeConfig(pki: (file: string) => string, name: string) {
  const bin = join(nodeDir, 'bin');
  mkdirSync(bin, { recursive: true });
  // containerd finds its shim on PATH.
  const shim = join(bin, 'containerd-shim-runc-v2');
  rmSync(shim, { force: true });
  symlinkSync(binaryPath('containerd-shim-runc-v2'), shim);

  const cniConf = writeFile(
    join(nodeDir, 'cni', 'net.d', '10-detour.conflist'),
    `${JSON.stringify(
      {
        cniVersion: '1.0.0',
        name: 'detour',
        plugins: [
          {
            type: 'bridge',
            bridge: 'cni0',
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: { type: 'host-local', ranges: [[{ subnet: podSubnet }]], routes: [{ dst: '0.0.0.0/0' }] },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      },
      null,
      2,
    )}\n`,
  );

  const containerd = join(nodeDir, 'containerd');
  const containerdConfig = writeFile(
    join(containerd, 'config.toml'),
    `version = 3
root = "${join(containerd, 'root')}"
state = "${join(containerd, 'state')}"

[grpc]
  address = "${sock.containerd}"

[ttrpc]
  address = "${sock.containerd}.ttrpc"

[plugins]
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '${versions.pauseImage}'
  [plugins.'io.containerd.cri.v1.runtime']
    # Pod network namespaces under the state dir, not /run/netns: cleanup touches only our own.
    netns_mounts_under_state_dir = true
    # This VM drops CAP_SYS_RESOURCE even for root, so no process may lower its oom_score_adj; the
    # kubelet asks -998 for every sandbox and runc init then dies ("can't get final child's PID from
    # pipe: EOF"). Clamp to containerd's own score instead.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '/usr/sbin/runc'
        SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '${join(nodeDir, 'cni', 'net.d')}'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
`,
  );

  const kubeletConfig = writeFile(
    join(nodeDir, 'kubelet', 'config.yaml'),
    `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${nodeIp}
port: ${ports.kubelet}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${ports.kubeletHealthz}
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: ${pki('ca.crt')} }
authorization: { mode: Webhook }
tlsCertFile: ${pki('kubelet.crt')}
tlsPrivateKeyFile: ${pki('kubelet.key')}
containerRuntimeEndpoint: unix://${sock.containerd}
# cgroup v1 on this VM: containerd 2 reports the driver (cgroupfs) through RuntimeConfig.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [${clusterDns}]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# A test node on a shared disk: evict only when really short.
evictionHard: { memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%" }
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
maxPods: 50
`,
  );
  return { cniConf, containerdConfig, kubeletConfig, bin, name };
}

export function nodeSpecs(kubeconfig: (name: string) => string, name: string): ProcessSpec[] {
  const containerdEnv = { ...process.env, PATH: `${join(nodeDir, 'bin')}:/usr/sbin:/usr/bin:/sbin:/bin` };
  return [
    // Node → apiserver: 127.0.0.1 and 198.18.0.2 (port ports.apiserver) (the `kubernetes` Service's endpoint)
    // inside the namespace reach the apiserver on the host's loopback.
    {
      name: 'forward-apiserver-host',
      binary: '/usr/bin/socat',
      args: [`UNIX-LISTEN:${sock.apiserver},fork,unlink-early`, `TCP:127.0.0.1:${ports.apiserver},nodelay`],
    },
    {
      name: 'forward-apiserver-node',
      binary: '/usr/bin/socat',
      netns: nodeNetns,
      args: [`TCP-LISTEN:${ports.apiserver},fork,reuseaddr,nodelay`, `UNIX-CONNECT:${sock.apiserver}`],
    },
    {
      name: 'kube-scheduler',
      binary: binaryPath('kube-scheduler'),
      args: [
        `--kubeconfig=${kubeconfig('scheduler')}`,
        `--authentication-kubeconfig=${kubeconfig('scheduler')}`,
        `--authorization-kubeconfig=${kubeconfig('scheduler')}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${ports.scheduler}`,
        '--leader-elect=false',
        '--v=0',
      ],
    },
    {
      name: 'containerd',
      binary: binaryPath('containerd'),
      netns: nodeNetns,
      env: containerdEnv,
      args: ['--config', join(nodeDir, 'containerd', 'config.toml'), '--log-level', 'warn'],
    },
    {
      name: 'kubelet',
      binary: binaryPath('kubelet'),
      netns: nodeNetns,
      env: containerdEnv,
      args: [
        `--config=${join(nodeDir, 'kubelet', 'config.yaml')}`,
        `--kubeconfig=${kubeconfig('kubelet')}`,
        `--root-dir=${join(nodeDir, 'kubelet', 'root')}`,
        `--hostname-override=${name}`,
        `--node-ip=${nodeIp}`,
        '--v=1',
      ],
    },
    {
      name: 'kube-proxy',
      binary: binaryPath('kube-proxy'),
      netns: nodeNetns,
      args: [
        `--kubeconfig=${kubeconfig('kube-proxy')}`,
        `--hostname-override=${name}`,
        '--proxy-mode=iptables',
        // NodePorts only on the node address, not on every address of the namespace.
        '--nodeport-addresses=primary',
        '--cluster-cidr=198.18.128.0/17',
        // The namespace's conntrack table is the host's: leave its size alone.
        '--conntrack-max-per-core=0',
        `--healthz-bind-address=127.0.0.1:${ports.kubeProxyHealthz}`,
        `--metrics-bind-address=127.0.0.1:${ports.kubeProxyMetrics}`,
        '--v=0',
      ],
    },
  ];
}

/**
 * The Node 24 base image (scripts/cluster-build.sh node-image) for detour's agent and the sample
 * apps: the Node binary this process runs on, so its version is the one scripts/node-env.sh chose.
 */
export const nodeImage = `detour.local/node:${process.versions.node}`;
export const nodeImageFile = `node-${process.versions.node}.oci.tar`;

/**
 * Forwarders that make a host loopback port reachable from pods at nodeIp:<nodePort> (for a control
 * plane component that runs on the host, e.g. istiod): host side connects to 127.0.0.1:<hostPort>,
 * node side listens on the node address only; a Unix socket joins them.
 */
export function exposeSpecs(name: string, hostPort: number, nodePort: number): ProcessSpec[] {
  const socket = join(nodeDir, `expose-${name}.sock`);
  return [
    {
      name: `forward-${name}-host`,
      binary: '/usr/bin/socat',
      args: [`UNIX-LISTEN:${socket},fork,unlink-early`, `TCP:127.0.0.1:${hostPort},nodelay`],
    },
    {
      name: `forward-${name}-node`,
      binary: '/usr/bin/socat',
      netns: nodeNetns,
      args: [`TCP-LISTEN:${nodePort},bind=${nodeIp},fork,reuseaddr,nodelay`, `UNIX-CONNECT:${socket}`],
    },
  ];
}

/** Stops every forwarder (pid file forward-*), the fixed ones and those exposeSpecs made. */
export async function stopForwarders(log: (line: string) => void): Promise<void> {
  if (!existsSync(pidDir)) return;
  for (const file of readdirSync(pidDir).filter((f) => f.startsWith('forward-') && f.endsWith('.pid'))) {
    const name = file.slice(0, -'.pid'.length);
    const pid = await stopProcess(pidDir, { name, binary: '/usr/bin/socat' });
    if (pid !== undefined) log(`stopped ${name} (pid ${pid})`);
  }
}

/** Imports the locally built pause image (and any other archive in imageDir) into containerd's k8s.io namespace. */
export function importImages(): string[] {
  const imported: string[] = [];
  if (!existsSync(imageDir)) return imported;
  for (const file of readdirSync(imageDir).filter((f) => f.endsWith('.tar'))) {
    run(binaryPath('ctr'), [
      '--address',
      sock.containerd,
      '-n',
      'k8s.io',
      'images',
      'import',
      join(imageDir, file),
    ]);
    imported.push(file);
  }
  return imported;
}

/**
 * Host kernel settings the kubelet rewrites at start (its protectKernelDefaults=false behaviour):
 * saved before the node starts, restored when it stops.
 */
const kubeletSysctls = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
];
const sysctlBackup = join(nodeDir, 'host-sysctls.json');

export function saveHostSysctls(): void {
  if (existsSync(sysctlBackup)) return; // the first save holds the host's own values
  const values: Record<string, string> = {};
  for (const key of kubeletSysctls) {
    try {
      values[key] = readFileSync(`/proc/sys/${key}`, 'utf8').trim();
    } catch {
      // not on this kernel
    }
  }
  writeFile(sysctlBackup, `${JSON.stringify(values, null, 2)}\n`);
}

function restoreHostSysctls(log: (line: string) => void): void {
  if (!existsSync(sysctlBackup)) return;
  const values = JSON.parse(readFileSync(sysctlBackup, 'utf8')) as Record<string, string>;
  for (const [key, value] of Object.entries(values)) {
    try {
      if (readFileSync(`/proc/sys/${key}`, 'utf8').trim() !== value) writeFileSync(`/proc/sys/${key}`, value);
    } catch {
      // leave it
    }
  }
  rmSync(sysctlBackup);
  log(`restored host sysctls ${Object.keys(values).join(', ')}`);
}

function pidsIn(cgroupDir: string): number[] {
  const pids: number[] = [];
  if (!existsSync(cgroupDir)) return pids;
  const walk = (dir: string) => {
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        const pid = Number.parseInt(line, 10);
        if (pid > 0) pids.push(pid);
      }
      for (const entry of readdirSync(dir)) {
        const child = join(dir, entry);
        if (statSync(child).isDirectory()) walk(child);
      }
    } catch {
      // a cgroup vanished while walking it
    }
  };
  walk(cgroupDir);
  return pids;
}

function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) {
    const child = join(dir, entry);
    try {
      if (statSync(child).isDirectory()) removeCgroupTree(child);
    } catch {
      // gone already
    }
  }
  try {
    rmdirSync(dir);
  } catch {
    // still busy: reported by the leftover check
  }
}

const cgroupRoot = '/sys/fs/cgroup';
function kubepodsDirs(): string[] {
  if (!existsSync(cgroupRoot)) return [];
  return readdirSync(cgroupRoot)
    .map((controller) => join(cgroupRoot, controller, 'kubepods'))
    .filter((dir) => existsSync(dir));
}

/** Processes whose argv[0] is this binary (containerd's shims daemonize away from containerd). */
function pidsOfBinary(binary: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number.parseInt(entry, 10);
    if (!(pid > 0)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === binary) pids.push(pid);
    } catch {
      // exited
    }
  }
  return pids;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Stops the node and removes what it left behind: pod processes (by the kubepods cgroups the kubelet
 * made), containerd's shims, mounts under the node dir (pod network namespaces among them), the kubepods cgroups
 * and the node namespace itself (its iptables rules and bridge go with it).
 */
export async function nodeDown(specs: ProcessSpec[], log: (line: string) => void): Promise<void> {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const stop = async (name: string) => {
    const spec = byName.get(name);
    if (!spec) return;
    const pid = await stopProcess(pidDir, spec);
    if (pid !== undefined) log(`stopped ${name} (pid ${pid})`);
  };
  await stop('kubelet');
  await stop('kube-proxy');
  // Every cgroup v1 hierarchy lists the same processes.
  const podPids = [...new Set(kubepodsDirs().flatMap(pidsIn))];
  if (podPids.length > 0) {
    killAll(podPids);
    log(`killed ${podPids.length} pod processes`);
    await sleep(500);
  }
  await stop('containerd');
  const shims = pidsOfBinary(binaryPath('containerd-shim-runc-v2'));
  if (shims.length > 0) {
    killAll(shims);
    log(`killed ${shims.length} containerd shims`);
    await sleep(300);
  }
  await stop('kube-scheduler');
  await stopForwarders(log);

  // Mounts the kubelet (volumes) and containerd (rootfs, shm) made under the node dir, deepest first.
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point?.startsWith(nodeDir) === true)
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) {
    try {
      execFileSync('umount', ['-l', point], { stdio: 'ignore' });
    } catch {
      // unmounted through a parent already
    }
  }
  if (mounts.length > 0) log(`unmounted ${mounts.length} mounts`);
  for (const dir of kubepodsDirs()) removeCgroupTree(dir);
  restoreHostSysctls(log);
  if (netnsExists()) {
    run('ip', ['netns', 'delete', nodeNetns]);
    log(`deleted network namespace ${nodeNetns}`);
  }
  rmSync(ownerFile, { force: true });
}
