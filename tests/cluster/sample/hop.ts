// One hop of the sample system: an HTTP server that answers JSON naming its service, version and
// pod, the routing headers it received, who called it (the SPIFFE identity the caller's sidecar
// presented, from the x-forwarded-client-cert header the server-side sidecar sets), and the answer
// of the next hop, called by its cluster name with the routing headers it received (x-dev,
// baggage). `GET /bytes?n=N` answers N bytes of a fixed pattern instead, calling nobody (the
// benchmark's payload: tests/bench/cluster.ts). Copied beside the apps into the sample image, where
// no repo package exists.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Readable } from 'node:stream';

export interface Hop {
  service: string;
  port: number;
  version: string;
  pod: string;
  /** The next hop's URL; none for the last one. */
  next?: string;
  /** How long to wait for the next hop. */
  timeoutMs?: number;
  /** Print a JSON line per request served (`{"served": path, "x-dev": ...}`), for tests to read. */
  log?: boolean;
}

const propagated = ['x-dev', 'baggage'];

/** The most /bytes answers: 1 GiB. */
export const maxPatternBytes = 1 << 30;
const block = Buffer.alloc(64 * 1024);
for (let at = 0; at < block.length; at += 32)
  createHash('sha256').update(String(at)).digest().copy(block, at);

/** utime + stime of a process from /proc/<pid>/stat, in seconds (USER_HZ is 100 on Linux). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** What the whole machine spent over a window (startMachineCount), in seconds. */
export interface MachineUse {
  busySeconds: number;
  cpuWaitSeconds: number;
  stolenSeconds: number;
}

/**
 * The whole machine over a window: its busy CPU (every core, from /proc/stat, time stolen by the
 * hypervisor left out) and how long some runnable task waited for a core (the "some" total of
 * /proc/pressure/cpu). Both files are the host's, in a pod too, so every path is counted alike; the
 * wait is what turns a path's extra CPU into tail latency on a machine with few cores.
 */
export function startMachineCount(): () => MachineUse {
  const before = machineNow();
  return () => {
    const now = machineNow();
    return {
      busySeconds: now.busy - before.busy,
      cpuWaitSeconds: now.wait - before.wait,
      stolenSeconds: now.stolen - before.stolen,
    };
  };
}

function machineNow(): { busy: number; wait: number; stolen: number } {
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice (USER_HZ = 100)
  const [, ...ticks] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = ticks.map(Number);
  const some = /^some .*total=(\d+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
  if (!some) throw new Error('/proc/pressure/cpu has no "some" line: the kernel lacks PSI (CONFIG_PSI)');
  return {
    busy: (user + nice + system + irq + softirq) / 100,
    wait: Number(some[1]) / 1e6,
    stolen: steal / 100,
  };
}

/** `total` bytes of the pattern /bytes answers, in 64 KiB chunks (the same on both ends of a check). */
export function* patternChunks(total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += block.length)
    yield block.subarray(0, Math.min(block.length, total - sent));
}

/** The URI= element of x-forwarded-client-cert: the calling workload's mesh identity. */
function callerIdentity(xfcc: string | undefined): string | null {
  return /URI=([^;,]+)/.exec(xfcc ?? '')?.[1] ?? null;
}

async function call(url: string, headers: Record<string, string>, timeoutMs: number) {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { url, status: res.status, body };
  } catch (error) {
    return { url, status: 0, error: (error as Error).message };
  }
}

export function serveHop(hop: Hop): void {
  createServer(async (req, res) => {
    if (hop.log)
      console.log(
        JSON.stringify({ served: req.url, method: req.method, 'x-dev': req.headers['x-dev'] ?? null }),
      );
    const url = new URL(req.url ?? '/', 'http://hop');
    if (url.pathname === '/bytes') {
      const n = Number(url.searchParams.get('n'));
      if (!Number.isSafeInteger(n) || n < 0 || n > maxPatternBytes) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`n must be 0..${maxPatternBytes}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      Readable.from(patternChunks(n)).pipe(res);
      return;
    }
    const headers: Record<string, string> = {};
    for (const name of propagated) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const body = {
      service: hop.service,
      version: hop.version,
      pod: hop.pod,
      path: req.url,
      from: callerIdentity(req.headers['x-forwarded-client-cert'] as string | undefined),
      headers: { 'x-dev': req.headers['x-dev'] ?? null, baggage: req.headers.baggage ?? null },
      called: hop.next ? [await call(hop.next, headers, hop.timeoutMs ?? 5000)] : [],
    };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }).listen(hop.port, () => console.log(`${hop.service} ${hop.version} listening on ${hop.port}`));
  process.once('SIGTERM', () => process.exit(0));
}
