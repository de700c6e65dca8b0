/**
 * Every process the benchmark starts goes through here, so every one of them is stopped by pid:
 * on success, on failure, and on Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

export interface Started {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far (capped at 1 MiB). */
  output: () => string;
}

const running = new Set<Started>();
const outputCap = 1 << 20;

export interface StartOptions {
  env?: Record<string, string>;
  /** Pin to this CPU with taskset (the pid stays the same: taskset execs the command). */
  cpu?: number;
  cwd?: string;
}

export function start(name: string, command: string, args: string[], options: StartOptions = {}): Started {
  const [file, argv] =
    options.cpu === undefined ? [command, args] : ['taskset', ['-c', String(options.cpu), command, ...args]];
  const child = spawn(file, argv, {
    env: { ...process.env, ...options.env },
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
  let text = '';
  const collect = (chunk: Buffer) => {
    if (text.length < outputCap) text += chunk.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const started: Started = { name, pid: child.pid, child, output: () => text };
  running.add(started);
  child.once('exit', () => running.delete(started));
  return started;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stop(p: Started, graceMs = 3_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) {
    running.delete(p);
    return;
  }
  const exited = once(p.child, 'exit');
  try {
    process.kill(p.pid, 'SIGTERM');
  } catch {
    running.delete(p);
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {}
  }, graceMs);
  await exited;
  clearTimeout(timer);
  running.delete(p);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].reverse().map((p) => stop(p)));
}

/** Last resort when the runner itself dies: no waiting, just kill what is left, by pid. */
function killLeftovers(): void {
  for (const p of running) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {}
  }
}
process.once('exit', killLeftovers);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void stopAll().finally(() => process.exit(130));
  });
}

/** Waits for a process to exit on its own, at most `timeoutMs`; then it is stopped. */
export async function waitExit(p: Started, timeoutMs: number): Promise<number | null> {
  if (p.child.exitCode !== null) return p.child.exitCode;
  const timer = setTimeout(() => void stop(p), timeoutMs);
  const [code] = (await once(p.child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}

export { freePort } from '../../support/ports.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export { sleep };

/** Polls until a TCP connect succeeds; fails with the process output after `timeoutMs`. */
export async function waitForPort(port: number, owner: Started, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (owner.child.exitCode !== null)
      throw new Error(`${owner.name} exited with ${owner.child.exitCode}:\n${owner.output().slice(-2000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(
    `${owner.name} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms:\n${owner.output().slice(-2000)}`,
  );
}

/** Polls until `predicate` holds on the process output. */
export async function waitForOutput(
  p: Started,
  predicate: (text: string) => boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (predicate(p.output())) return;
    if (p.child.exitCode !== null) break;
    await sleep(50);
  }
  throw new Error(`${p.name}: expected output not seen within ${timeoutMs} ms:\n${p.output().slice(-2000)}`);
}

/** Resident memory from /proc: current (VmRSS) and peak (VmHWM), in MiB. */
export async function memoryOf(pid: number): Promise<{ rssMiB: number; hwmMiB: number }> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
}
