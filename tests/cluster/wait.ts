import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterError } from './errors.ts';

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Polls `check` until it returns a value other than undefined/false, or throws CLUSTER_TIMEOUT naming
 * `what` and the last error seen (the useful part when a component never comes up).
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const intervalMs = options.intervalMs ?? 250;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const result = await check();
      if (result !== undefined && result !== false) return result;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new ClusterError(
        'CLUSTER_TIMEOUT',
        `timed out after ${timeoutMs} ms waiting for ${what}${detail}`,
      );
    }
    await sleep(intervalMs);
  }
}
