import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Cluster components run as detached processes (they outlive `npm run cluster:up`), each tracked by
 * a pid file. A pid is only trusted while /proc/<pid>/cmdline still names the same binary, so a
 * recycled pid is never signalled.
 */
export interface ProcessSpec {
  name: string;
  binary: string;
  args: string[];
  /** Run inside this network namespace (through nsenter, which execs the binary in place). */
  netns?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * The environment the cluster's processes and tools run with: the caller's, with /usr/sbin and /sbin
 * on PATH. ip, sysctl, iptables and runc live there, and a non-login shell's PATH (`npm run demo`
 * from an IDE's terminal, `env -i PATH=/usr/local/bin:/usr/bin:/bin`) lacks them.
 */
export const systemToolsEnv: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`,
};

function pidFile(pidDir: string, name: string): string {
  return join(pidDir, `${name}.pid`);
}

function isAliveAs(pid: number, binary: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the parenthesised command: state, parent pid, ...; a zombie has exited.
    const [state, parent] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state === 'Z') return false;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    // Empty while an exec is under way (spawn's, or nsenter's of the binary): the kernel sets up the
    // new argv after it has closed the old program's files, which is when spawn returns. Taking that
    // instant for a stale pid file lost a running component (CI). Only a kernel thread (parent pid 2)
    // has an empty cmdline for good.
    if (argv === '') return parent !== '2';
    // argv[0], or a later argument for nsenter before it has exec'd the binary.
    return argv.split('\0').includes(binary);
  } catch {
    return false;
  }
}

/** The pid of the running component, or undefined (a stale pid file is removed). */
export function runningPid(pidDir: string, spec: Pick<ProcessSpec, 'name' | 'binary'>): number | undefined {
  const file = pidFile(pidDir, spec.name);
  if (!existsSync(file)) return undefined;
  const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
  if (Number.isInteger(pid) && isAliveAs(pid, spec.binary)) return pid;
  rmSync(file, { force: true });
  return undefined;
}

/**
 * True when a running component was started with other arguments than `spec` now has (an older
 * checkout started it): it keeps running as it is until the cluster is restarted.
 */
export function startedWithOtherArgs(pid: number, spec: ProcessSpec): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((arg) => arg !== '');
    const args = argv.slice(argv.indexOf(spec.binary) + 1);
    return args.join('\0') !== spec.args.join('\0');
  } catch {
    return false;
  }
}

/**
 * A socat forwarder holds no state, so one an older checkout started with other arguments (say,
 * without `nodelay`) is stopped here for the caller to start it anew; its forked children keep
 * serving the connections they carry. True when it stopped one: its restart is no component the
 * caller started (useCluster must not stop the shared cluster for it).
 */
export async function stopOutdatedForwarder(pidDir: string, spec: ProcessSpec): Promise<boolean> {
  const pid = runningPid(pidDir, spec);
  if (pid === undefined || spec.binary !== '/usr/bin/socat' || !startedWithOtherArgs(pid, spec)) return false;
  await stopProcess(pidDir, spec);
  return true;
}

/** Starts the component unless it already runs; output goes to <logDir>/<name>.log. */
export function startProcess(
  pidDir: string,
  logDir: string,
  spec: ProcessSpec,
): { pid: number; started: boolean } {
  const existing = runningPid(pidDir, spec);
  if (existing !== undefined) return { pid: existing, started: false };
  mkdirSync(pidDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const log = openSync(join(logDir, `${spec.name}.log`), 'a');
  // nsenter, not `ip netns exec`: the latter also enters a new mount namespace and remounts /sys,
  // which hides the cgroup mounts from the kubelet and containerd's mounts from everyone else.
  const [command, args] = spec.netns
    ? ['nsenter', [`--net=/run/netns/${spec.netns}`, '--', spec.binary, ...spec.args]]
    : [spec.binary, spec.args];
  const child = spawn(command, args, {
    detached: true,
    stdio: ['ignore', log, log],
    env: spec.env ?? systemToolsEnv,
  });
  closeSync(log);
  if (child.pid === undefined) throw new Error(`could not start ${spec.binary}`);
  child.unref();
  writeFileSync(pidFile(pidDir, spec.name), `${child.pid}\n`);
  return { pid: child.pid, started: true };
}

/** SIGTERM, then SIGKILL after `graceMs`. Resolves once the process is gone. */
export async function stopProcess(
  pidDir: string,
  spec: Pick<ProcessSpec, 'name' | 'binary'>,
  graceMs = 10_000,
): Promise<number | undefined> {
  const pid = runningPid(pidDir, spec);
  if (pid === undefined) return undefined;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAliveAs(pid, spec.binary)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      await sleep(200);
      break;
    }
    await sleep(100);
  }
  rmSync(pidFile(pidDir, spec.name), { force: true });
  return pid;
}

/** Peak and current resident memory of a process, in MiB (from /proc/<pid>/status). */
export function memoryMiB(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { rss: Math.round(kib('VmRSS') / 1024), peak: Math.round(kib('VmHWM') / 1024) };
  } catch {
    return undefined;
  }
}
