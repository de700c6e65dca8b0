import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../wrk-report.lua', import.meta.url));

export interface WrkResult {
  rps: number;
  requests: number;
  errors: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
}

/** One closed-loop wrk run (1 thread, keep-alive); `header` is "name: value" or undefined. */
export function runWrk(options: {
  url: string;
  connections: number;
  seconds: number;
  header: string | undefined;
  cpu: number | undefined;
}): Promise<WrkResult> {
  const args = [
    '-t1',
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    '--timeout',
    '5s',
    '-s',
    script,
    options.url,
  ];
  const [file, argv] =
    options.cpu === undefined ? ['wrk', args] : ['taskset', ['-c', String(options.cpu), 'wrk', ...args]];
  return new Promise((resolve, reject) => {
    execFile(
      file,
      argv,
      { env: { ...process.env, BENCH_HEADER: options.header ?? '' }, timeout: (options.seconds + 30) * 1000 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`wrk failed (is it installed? apt-get install wrk): ${error.message}\n${stderr}`));
          return;
        }
        const line = stdout.split('\n').find((l) => l.startsWith('BENCHJSON '));
        if (!line) {
          reject(new Error(`wrk printed no result:\n${stdout}\n${stderr}`));
          return;
        }
        const r = JSON.parse(line.slice('BENCHJSON '.length));
        resolve({
          rps: r.requests / (r.durationUs / 1e6),
          requests: r.requests,
          errors: r.errors + r.non2xx,
          p50Ms: r.p50Us / 1000,
          p90Ms: r.p90Us / 1000,
          p99Ms: r.p99Us / 1000,
          p999Ms: r.p999Us / 1000,
        });
      },
    );
  });
}
