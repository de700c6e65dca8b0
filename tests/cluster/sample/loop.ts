// The benchmark's client (tests/bench/cluster.ts), the same file in the caller pod
// (`node /app/loop.ts ...`) and on this machine (under `detour exec`, or straight to a
// `kubectl port-forward`), so every path is measured by the same code. Prints one JSON line.
//
//   loop.ts latency URL [--connections C] [--rate R] [--count N] [--max-seconds S] [--warmup W]
//                       [--header name=value]... [--cpu name=pid|parent|match:REGEX]...
//     C keep-alive connections (one http.Agent with one socket each), W requests each first (not
//     counted), then N requests in all, at R requests/s spread evenly over the connections (each
//     sends its next request at its own slot, or when its previous answer came if that is later);
//     R = 0: each connection sends as soon as its previous answer came. Stops after S seconds.
//     Reports per-request latency percentiles (ms) and, for --cpu, the CPU seconds
//     (/proc/<pid>/stat utime + stime) each named process used during the counted requests
//     (match:REGEX: every process whose program, argv[0], matches, summed), and the whole machine's
//     busy CPU and CPU-pressure stall over the same requests (`machine`, see startMachineCount).
//   loop.ts bulk URL --bytes B [--cpu ...]
//     One GET of B bytes of /bytes's pattern, checked against the pattern's sha256; reports Gbit/s
//     and, for --cpu, the CPU seconds of each named process during the transfer.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { cpuSeconds, patternChunks, startMachineCount } from './hop.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    connections: { type: 'string', default: '1' },
    rate: { type: 'string', default: '0' },
    count: { type: 'string', default: '1000' },
    'max-seconds': { type: 'string', default: '60' },
    warmup: { type: 'string', default: '20' },
    header: { type: 'string', multiple: true, default: [] },
    cpu: { type: 'string', multiple: true, default: [] },
    bytes: { type: 'string', default: String(256 << 20) },
  },
});
const [mode, url] = positionals;
const requestTimeoutMs = 10_000;

function pairs(list: string[]): Array<[string, string]> {
  return list.map((pair) => {
    const at = pair.indexOf('=');
    if (at < 1) throw new Error(`expected name=value, got ${pair}`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function get(agent: http.Agent, target: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.get(target, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(performance.now() - started)
          : reject(new Error(`status ${res.statusCode}`)),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(requestTimeoutMs, () => req.destroy(new Error(`no answer within ${requestTimeoutMs} ms`)));
  });
}

/**
 * The pids a --cpu value names: one pid, this process's parent, or every process whose program
 * (argv[0]) matches a regex. Only argv[0]: a command line holding the regex itself (this loop's,
 * and under `detour exec` the CLI's and the shell's, whose arguments carry the loop's) would match.
 */
function pidsOf(spec: string): number[] {
  if (spec === 'parent') return [process.ppid];
  if (!spec.startsWith('match:')) return [Number(spec)];
  const pattern = new RegExp(spec.slice('match:'.length));
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .filter((entry) => {
      try {
        return pattern.test(readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] ?? '');
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** Starts counting the CPU of the --cpu processes; the returned function says what each used since. */
function startCpuCount(): () => Record<string, number> {
  const counted = pairs(values.cpu).map(([name, spec]) => {
    const pids = pidsOf(spec).map((pid) => ({ pid, before: cpuOrNaN(pid) }));
    return { name, pids };
  });
  return () =>
    Object.fromEntries(
      counted.map(({ name, pids }) => [
        name,
        // A process that ended meanwhile (a relay's connection) is left out.
        pids.reduce((sum, { pid, before }) => {
          const now = cpuOrNaN(pid);
          return Number.isNaN(now) ? sum : sum + now - before;
        }, 0),
      ]),
    );
}

function cpuOrNaN(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return Number.NaN;
  }
}

async function latency(target: string) {
  const connections = Number(values.connections);
  const rate = Number(values.rate);
  const count = Number(values.count);
  const headers = Object.fromEntries(pairs(values.header));
  const agents = Array.from(
    { length: connections },
    () => new http.Agent({ keepAlive: true, maxSockets: 1 }),
  );
  await Promise.all(
    agents.map(async (agent) => {
      for (let i = 0; i < Number(values.warmup); i++) await get(agent, target, headers);
    }),
  );
  const cpuUsed = startCpuCount();
  const machineUsed = startMachineCount();
  const started = performance.now();
  const deadline = started + Number(values['max-seconds']) * 1000;
  const interval = rate > 0 ? (1000 * connections) / rate : 0;
  const latencies: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  let sent = 0;
  await Promise.all(
    agents.map(async (agent, index) => {
      let slot = started + (interval * index) / connections;
      while (sent < count && performance.now() < deadline) {
        sent++;
        if (interval > 0) {
          const wait = slot - performance.now();
          if (wait > 0) await sleep(wait);
          slot += interval;
        }
        try {
          latencies.push(await get(agent, target, headers));
        } catch (error) {
          errors++;
          if (errorSamples.length < 5) errorSamples.push((error as Error).message);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpuSpent = cpuUsed();
  const machine = machineUsed();
  for (const agent of agents) agent.destroy();
  const sorted = latencies.sort((a, b) => a - b);
  return {
    mode: 'latency',
    url: target,
    connections,
    rate,
    requests: sorted.length,
    errors,
    errorSamples,
    seconds,
    achievedRate: sorted.length / seconds,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
    cpuSeconds: cpuSpent,
    machine,
  };
}

async function bulk(target: string) {
  const bytes = Number(values.bytes);
  const expected = createHash('sha256');
  for (const chunk of patternChunks(bytes)) expected.update(chunk);
  const wanted = expected.digest('hex');
  const cpuUsed = startCpuCount();
  const started = performance.now();
  const { received, sha256 } = await new Promise<{ received: number; sha256: string }>((resolve, reject) => {
    const hash = createHash('sha256');
    let received = 0;
    const req = http.get(
      `${target}${target.includes('?') ? '&' : '?'}n=${bytes}`,
      { agent: false },
      (res) => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          hash.update(chunk);
        });
        res.on('end', () => resolve({ received, sha256: hash.digest('hex') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(requestTimeoutMs, () => req.destroy(new Error(`stalled for ${requestTimeoutMs} ms`)));
  });
  const seconds = (performance.now() - started) / 1000;
  const cpuSpent = cpuUsed();
  if (received !== bytes || sha256 !== wanted)
    throw new Error(`bulk: got ${received} bytes, sha256 ${sha256}; wanted ${bytes}, ${wanted}`);
  const gbitPerSecond = (bytes * 8) / seconds / 1e9;
  return { mode: 'bulk', url: target, bytes, seconds, gbitPerSecond, sha256, cpuSeconds: cpuSpent };
}

if ((mode !== 'latency' && mode !== 'bulk') || !url) {
  console.error('usage: loop.ts latency URL [options] | loop.ts bulk URL --bytes B [--cpu ...]');
  process.exit(2);
}
console.log(JSON.stringify(mode === 'latency' ? await latency(url) : await bulk(url)));
