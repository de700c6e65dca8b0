import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** What the wait is for: the timeout error names it. */
  what: string;
  timeoutMs: number;
  intervalMs?: number;
  /** Extra context for the timeout message (e.g. the last lines a process printed). */
  detail?: () => string;
  /** The error to throw on timeout, from its message (default: a plain Error). */
  timeoutError?: (message: string) => Error;
}

/**
 * Polls `check` until it returns something other than undefined/false. Every wait in the tests and
 * the local cluster is bounded: on timeout the error names what never happened and the last error seen.
 */
export async function waitFor<T>(
  options: WaitOptions,
  check: () => Promise<T | undefined | false> | T | undefined | false,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const result = await check();
      if (result !== undefined && result !== false) return result;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const last = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      const detail = options.detail ? `\n${options.detail()}` : '';
      const message = `timed out after ${options.timeoutMs} ms waiting for ${options.what}${last}${detail}`;
      throw options.timeoutError ? options.timeoutError(message) : new Error(message);
    }
    await sleep(options.intervalMs ?? 100);
  }
}

/** Rejects with a message naming `what` when `promise` does not settle within `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
