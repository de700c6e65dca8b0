import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from './wait.ts';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Keep at most this much of a process's output (the tail is what explains a failure). */
const maxOutput = 4 * 1024 * 1024;

/**
 * A process a test started, with its output captured. It runs in its own process group, so
 * stopping it also stops what it started (the CLI's wrapped command). It is stopped by pid.
 */
export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<ExitStatus>;
  stdout = '';
  stderr = '';
  #status: ExitStatus | undefined;

  constructor(
    name: string,
    argv: readonly string[],
    options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ) {
    const [command = '', ...args] = argv;
    this.name = name;
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout = (this.stdout + chunk).slice(-maxOutput);
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-maxOutput);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('error', (error) => {
        this.stderr += `\n[spawn failed: ${error.message}]`;
        this.#status = { code: 127, signal: null };
        resolve(this.#status);
      });
      this.child.once('close', (code, signal) => {
        this.#status = { code, signal };
        resolve(this.#status);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get status(): ExitStatus | undefined {
    return this.#status;
  }

  /** The JSON objects among the lines of stdout or stderr (other lines are skipped). */
  jsonLines(stream: 'stdout' | 'stderr'): Record<string, unknown>[] {
    const objects: Record<string, unknown>[] = [];
    for (const line of this[stream].split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        objects.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a partial line (still being written) or an app's own output
      }
    }
    return objects;
  }

  /** The last lines of both streams, for failure messages. */
  tail(lines = 30): string {
    const last = (text: string) => text.trimEnd().split('\n').slice(-lines).join('\n');
    return `--- ${this.name} (pid ${this.pid}) stdout:\n${last(this.stdout)}\n--- ${this.name} stderr:\n${last(this.stderr)}`;
  }

  /** Waits until `stream` has a line that `match` accepts (a regex or a JSON predicate). */
  async waitForLine(
    stream: 'stdout' | 'stderr',
    match: RegExp | ((json: Record<string, unknown>) => boolean),
    what: string,
    timeoutMs = 15_000,
    from = 0,
  ): Promise<string | Record<string, unknown>> {
    return waitFor(
      { what: `${this.name}: ${what}`, timeoutMs, intervalMs: 50, detail: () => this.tail() },
      () => {
        const text = this[stream].slice(from);
        if (match instanceof RegExp) {
          const found = text.split('\n').find((line) => match.test(line));
          if (found !== undefined) return found;
        } else {
          const found = jsonLinesOf(text).find(match);
          if (found) return found;
        }
        if (this.#status)
          throw new Error(
            `${this.name} exited (${this.#status.signal ?? this.#status.code}) before: ${what}`,
          );
        return undefined;
      },
    );
  }

  /** Signals the whole process group (the process and everything it started). */
  signal(signal: NodeJS.Signals): void {
    if (this.#status || this.pid === undefined) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  async stop(graceMs = 3_000): Promise<ExitStatus> {
    if (this.#status) return this.#status;
    this.signal('SIGTERM');
    const timer = sleep(graceMs).then(() => 'timeout' as const);
    if ((await Promise.race([this.exited, timer])) === 'timeout') {
      this.signal('SIGKILL');
    }
    const status = await this.exited;
    // Children that ignored SIGTERM in the group.
    this.signal('SIGKILL');
    return status;
  }
}

function jsonLinesOf(text: string): Record<string, unknown>[] {
  const objects: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      objects.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not JSON after all
    }
  }
  return objects;
}

/** Every process a test file started, so `after` can stop them all, each by its pid. */
export class ProcessSet {
  readonly #processes = new Set<ManagedProcess>();

  start(name: string, argv: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    const managed = new ManagedProcess(name, argv, options);
    this.#processes.add(managed);
    void managed.exited.then(() => this.#processes.delete(managed));
    return managed;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#processes].map((managed) => managed.stop()));
  }

  /** Synchronous last resort (process 'exit'): SIGKILL every group still running. */
  killAllNow(): void {
    for (const managed of this.#processes) managed.signal('SIGKILL');
  }
}

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, killing it (and failing) after `timeoutMs`. */
export async function run(
  argv: readonly string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; what?: string } = {},
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const managed = new ManagedProcess(options.what ?? argv.join(' '), argv, options);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    managed.signal('SIGKILL');
  }, timeoutMs);
  const status = await managed.exited;
  clearTimeout(timer);
  if (timedOut)
    throw new Error(`timed out after ${timeoutMs} ms: ${options.what ?? argv.join(' ')}\n${managed.tail()}`);
  return { ...status, stdout: managed.stdout, stderr: managed.stderr };
}
