import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FixedRateResult {
  requests: number;
  errors: number;
  achievedRps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/**
 * A fixed request rate with h2load over HTTP/1.1 (`--h1 --rps`): `clients` connections, each
 * sending `rate / clients` requests per second, for `seconds`. Latency per request comes from
 * h2load's `--log-file` (microseconds from send to the end of the response), so percentiles are
 * exact. h1 has one request in flight per connection, so the clients are many enough that each
 * connection's interval (clients / rate) is far above the latencies measured.
 */
export function runFixedRate(options: {
  url: string;
  rate: number;
  seconds: number;
  clients: number;
  header: string | undefined;
  cpu: number | undefined;
}): Promise<FixedRateResult> {
  const dir = mkdtempSync(join(tmpdir(), 'detour-bench-h2load-'));
  const log = join(dir, 'requests.tsv');
  const perClient = options.rate / options.clients;
  const total = options.rate * options.seconds;
  const args = [
    '--h1',
    '-c',
    String(options.clients),
    '-t',
    '1',
    '-n',
    String(total),
    `--rps=${perClient}`,
    `--log-file=${log}`,
    ...(options.header ? ['-H', options.header] : []),
    options.url,
  ];
  const [file, argv] =
    options.cpu === undefined
      ? ['h2load', args]
      : ['taskset', ['-c', String(options.cpu), 'h2load', ...args]];
  return new Promise((resolve, reject) => {
    execFile(
      file,
      argv,
      { timeout: (options.seconds + 30) * 1000, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        try {
          if (error)
            throw new Error(
              `h2load failed (is it installed? apt-get install nghttp2-client): ${error.message}\n${stderr}`,
            );
          const rows = readFileSync(log, 'utf8').trim().split('\n');
          let errors = 0;
          let first = Number.POSITIVE_INFINITY;
          let last = 0;
          const latencies = new Float64Array(rows.length);
          let n = 0;
          for (const row of rows) {
            const [startUs, status, durationUs] = row.split('\t').map(Number) as [number, number, number];
            if (!(status >= 200 && status < 300)) errors++;
            first = Math.min(first, startUs);
            last = Math.max(last, startUs + durationUs);
            latencies[n++] = durationUs / 1000;
          }
          const sorted = latencies.subarray(0, n).sort();
          const failed = /(\d+) failed/.exec(stdout);
          resolve({
            requests: n,
            errors: errors + Number(failed?.[1] ?? 0),
            achievedRps: n / ((last - first) / 1e6),
            p50Ms: percentile(sorted, 50),
            p90Ms: percentile(sorted, 90),
            p99Ms: percentile(sorted, 99),
            p999Ms: percentile(sorted, 99.9),
            maxMs: sorted[n - 1] ?? Number.NaN,
          });
        } catch (e) {
          reject(e);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  });
}
