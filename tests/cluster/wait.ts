import { waitFor as poll } from '../support/wait.ts';
import { ClusterError } from './errors.ts';

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

/** The cluster's waits: `support/wait.ts` with the cluster's defaults, timing out with CLUSTER_TIMEOUT. */
export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  return poll(
    {
      what,
      timeoutMs: options.timeoutMs ?? 60_000,
      intervalMs: options.intervalMs ?? 250,
      timeoutError: (message) => new ClusterError('CLUSTER_TIMEOUT', message),
    },
    check,
  );
}
