import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { requireNetns, sweepStaleNamespaces } from '../../support/netns.ts';

/**
 * Network namespaces standing in for pods until tier 2 runs real ones: one per workload, all on a
 * bridge that lives in a namespace of its own, so no interface or address ever appears in the host's
 * namespace. Addresses come from 198.19.64.0/24 (inside 198.18.0.0/15, outside the cluster's pod range
 * 198.18.0.0/16 and service range 198.19.0.0/20). Names follow tests/support/netns.ts
 * (dt-<pid>-<tag>-<role>), so a run that dies leaves namespaces the next run's sweep removes.
 */
export const workloadSubnet = '198.19.64';

export interface WorkloadNet {
  /** Namespace name of each workload. */
  readonly names: Readonly<Record<string, string>>;
  /** Address of each workload (on its interface `eth0`). */
  readonly addresses: Readonly<Record<string, string>>;
  /** argv prefix running a command inside a workload's namespace. */
  exec(workload: string, argv: readonly string[]): string[];
  remove(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function removeNamespace(name: string): void {
  try {
    ip('netns', 'del', name);
  } catch {
    // already gone
  }
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
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
 * Processes still running inside namespaces of a run that died (sidecars, relays, apps it started
 * there) are killed by pid before the namespaces go: otherwise they would outlive their network.
 */
export function killStaleWorkloads(tag: string): number[] {
  const killed: number[] = [];
  const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '');
  for (const name of names) {
    const owner = Number(new RegExp(`^dt-(\\d+)-${tag}-`).exec(name)?.[1]);
    if (!owner || owner === process.pid || isAlive(owner)) continue;
    const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    for (const pid of pids.map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // already gone
      }
    }
  }
  return killed;
}

/** Creates a namespace per workload (addresses .2, .3, ... in order) plus the bridge's namespace. */
export function createWorkloadNet(tag: string, workloads: readonly string[]): WorkloadNet {
  requireNetns();
  killStaleWorkloads(tag);
  sweepStaleNamespaces();
  const bridge = `dt-${process.pid}-${tag}-br`;
  const names: Record<string, string> = {};
  const addresses: Record<string, string> = {};
  workloads.forEach((workload, index) => {
    names[workload] = `dt-${process.pid}-${tag}-${workload}`;
    addresses[workload] = `${workloadSubnet}.${index + 2}`;
  });
  const all = [bridge, ...Object.values(names)];
  const remove = () => {
    for (const name of all) removeNamespace(name);
  };
  process.once('exit', remove);
  try {
    for (const name of all) {
      ip('netns', 'add', name);
      ip('-n', name, 'link', 'set', 'lo', 'up');
    }
    ip('-n', bridge, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', bridge, 'link', 'set', 'br0', 'up');
    workloads.forEach((workload, index) => {
      const ns = names[workload] as string;
      const port = `p${index}`;
      // Created inside the bridge's namespace, one end then moved: nothing touches the host's.
      ip('-n', bridge, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('-n', bridge, 'link', 'set', port, 'master', 'br0');
      ip('-n', bridge, 'link', 'set', port, 'up');
      ip('-n', ns, 'addr', 'add', `${addresses[workload]}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      // `ip netns exec` mounts these over /etc/hosts and /etc/resolv.conf: no lookup leaves the namespace.
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/hosts`, `127.0.0.1 localhost\n${addresses[workload]} ${workload}\n`);
      writeFileSync(`/etc/netns/${ns}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    });
  } catch (error) {
    remove();
    throw error;
  }
  return {
    names,
    addresses,
    exec: (workload, argv) => ['ip', 'netns', 'exec', names[workload] as string, ...argv],
    remove,
  };
}
