import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';

/**
 * Three network namespaces standing in for the pieces of a real system, linked point to point so the
 * laptop reaches only the pod (as through a port-forward), and only the pod reaches the cluster:
 *
 *   laptop 198.18.2.2 ── 198.18.2.1 [pod 198.18.1.2] 198.18.3.1 ── 198.18.3.2 cluster
 *
 * The pod's own address 198.18.1.2 sits on its loopback; the laptop and the cluster route to it over
 * their link. The pod does not forward, so the laptop cannot reach the cluster. Addresses are in
 * 198.18.0.0/15 (benchmarking space) only, and exist only inside the namespaces the run created.
 */
export const addresses = {
  pod: '198.18.1.2',
  podTowardLaptop: '198.18.2.1',
  laptop: '198.18.2.2',
  podTowardCluster: '198.18.3.1',
  cluster: '198.18.3.2',
} as const;

export type Role = 'pod' | 'laptop' | 'cluster';

/** Every namespace of a run is named dt-<pid>-<tag>-<role>; dead pids mark stale ones. */
const namePattern = /^dt-(\d+)-/;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function listNamespaces(): string[] {
  return ip('netns', 'list')
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * SIGKILLs the processes still inside a namespace this harness created (by the pids `ip netns pids`
 * lists): what a run left when it died, or a process that escaped its process group.
 */
function killProcessesIn(name: string): void {
  let pids: number[] = [];
  try {
    pids = ip('netns', 'pids', name).split('\n').filter(Boolean).map(Number);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function removeNamespace(name: string): void {
  killProcessesIn(name);
  try {
    ip('netns', 'del', name);
  } catch {
    // already gone
  }
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}

/** Removes dt-* namespaces (their processes, their /etc/netns files) left by runs whose process is gone. */
export function sweepStaleNamespaces(): string[] {
  const removed: string[] = [];
  for (const name of listNamespaces()) {
    const pid = Number(namePattern.exec(name)?.[1]);
    if (pid && pid !== process.pid && !isAlive(pid)) {
      removeNamespace(name);
      removed.push(name);
    }
  }
  return removed;
}

/**
 * Throws, loudly, when this machine cannot create network namespaces: the integration tests must
 * never pass by doing nothing. The message says why and how to fix it.
 */
export function requireNetns(probe: { uid?: number | undefined } = { uid: process.getuid?.() }): void {
  const fix =
    'run the integration tests as root on Linux with iproute2 installed (CI does: `sudo npm run test:integration`, ' +
    'or in a container started with --privileged / CAP_NET_ADMIN + CAP_SYS_ADMIN); `bash scripts/setup.sh` installs iproute2';
  if (process.platform !== 'linux')
    throw new Error(
      `integration tests need Linux network namespaces; this is ${process.platform}. Fix: ${fix}`,
    );
  if (probe.uid !== 0)
    throw new Error(
      `integration tests need root to create network namespaces (uid is ${probe.uid}). Fix: ${fix}`,
    );
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    throw new Error(`the \`ip\` command (iproute2) is missing. Fix: apt-get install iproute2, or ${fix}`);
  }
  const probeName = `dt-${process.pid}-probe`;
  try {
    ip('netns', 'add', probeName);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim() ?? (error as Error).message;
    throw new Error(`\`ip netns add\` failed on this machine: ${stderr}. Fix: ${fix}`);
  } finally {
    removeNamespace(probeName);
  }
}

export interface Topology {
  readonly names: Readonly<Record<Role, string>>;
  /** argv prefix running a command inside the role's namespace. */
  exec(role: Role, argv: readonly string[]): string[];
  /** Writes /etc/netns/<ns>/hosts, which `ip netns exec` mounts over /etc/hosts. */
  writeHosts(role: Role, entries: Record<string, string[]>): void;
  remove(): void;
}

const defaultHosts = '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n';
/** A resolver that fails at once (nothing listens on loopback :53): no lookup leaves a namespace. */
const deadEndResolver = 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n';

/**
 * A veth pair from the pod (`to-<peer>`, `podSide`/24) to the peer namespace (`to-pod`,
 * `peerAddress`/24), both ends up, and the peer's route to the pod's own address through it. Links
 * are created inside the namespaces: no interface ever appears in the host's namespace.
 */
function linkPodTo(
  names: Readonly<Record<Role, string>>,
  peer: 'laptop' | 'cluster',
  podSide: string,
  peerAddress: string,
): void {
  const podLink = `to-${peer}`;
  ip('-n', names.pod, 'link', 'add', podLink, 'type', 'veth', 'peer', 'name', 'to-pod', 'netns', names[peer]);
  ip('-n', names.pod, 'addr', 'add', `${podSide}/24`, 'dev', podLink);
  ip('-n', names.pod, 'link', 'set', podLink, 'up');
  ip('-n', names[peer], 'addr', 'add', `${peerAddress}/24`, 'dev', 'to-pod');
  ip('-n', names[peer], 'link', 'set', 'to-pod', 'up');
  ip('-n', names[peer], 'route', 'add', `${addresses.pod}/32`, 'via', podSide);
}

/**
 * Creates the three namespaces for one test file (tag keeps files of one run apart). They are
 * removed by `remove()`, and, should the test process die first, by the next run's sweep.
 */
export function createTopology(tag: string): Topology {
  requireNetns();
  sweepStaleNamespaces();
  const names: Record<Role, string> = {
    pod: `dt-${process.pid}-${tag}-pod`,
    laptop: `dt-${process.pid}-${tag}-laptop`,
    cluster: `dt-${process.pid}-${tag}-cluster`,
  };
  const remove = () => {
    for (const name of Object.values(names)) removeNamespace(name);
  };
  // Removed even when the test process ends without running `after`.
  process.once('exit', remove);
  try {
    for (const name of Object.values(names)) {
      ip('netns', 'add', name);
      ip('-n', name, 'link', 'set', 'lo', 'up');
      mkdirSync(`/etc/netns/${name}`, { recursive: true });
      writeFileSync(`/etc/netns/${name}/hosts`, defaultHosts);
      writeFileSync(`/etc/netns/${name}/resolv.conf`, deadEndResolver);
    }
    ip('-n', names.pod, 'addr', 'add', `${addresses.pod}/32`, 'dev', 'lo');
    linkPodTo(names, 'laptop', addresses.podTowardLaptop, addresses.laptop);
    linkPodTo(names, 'cluster', addresses.podTowardCluster, addresses.cluster);
  } catch (error) {
    remove();
    process.off('exit', remove);
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`could not create the test namespaces: ${stderr || (error as Error).message}`);
  }
  return {
    names,
    exec: (role, argv) => ['ip', 'netns', 'exec', names[role], ...argv],
    writeHosts: (role, entries) => {
      const lines = Object.entries(entries).map(
        ([address, hostNames]) => `${address} ${hostNames.join(' ')}`,
      );
      writeFileSync(`/etc/netns/${names[role]}/hosts`, `${defaultHosts}${lines.join('\n')}\n`);
    },
    remove: () => {
      remove();
      process.off('exit', remove);
    },
  };
}

/** True when the namespace still exists (for tests of the harness itself). */
export function namespaceExists(name: string): boolean {
  return existsSync(`/run/netns/${name}`);
}
