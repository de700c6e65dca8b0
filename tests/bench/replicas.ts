/**
 * Issue 13's benchmark: what the hop between agent replicas adds to a session's request, against
 * the request reaching the replica that holds the tunnel (`npm run bench:replicas`). On
 * loopback: a local app, a real tunnel to replica b (which holds the session), replica a (which
 * forwards to b, as it would to the holder's pod address), and a client in a worker thread (its own
 * event loop) sending sequential keep-alive requests, direct and forwarded in alternating rounds,
 * so drift on a shared machine hits both. Writes tests/bench/replicas-results.json.
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { holdSession, replica } from '../../agent/test/peers/replica-stack.ts';

const rounds = 10;
const perRound = 300;
/** Sessions in the many-developers case (every one held through a tunnel of its own). */
const manySessions = 50;
const out = fileURLToPath(new URL('replicas-results.json', import.meta.url));
const filterOf = (dev: string) => ({ headers: { 'x-dev': { exact: dev } } });

const app = http.createServer((_req, res) => res.end('local'));
await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
const appPort = (app.address() as { port: number }).port;
const a = await replica('agent-a');
const b = await replica('agent-b');
const held = [await holdSession(b, [a, b], 'bench-0', filterOf('bench-0'), appPort)];

/** The client: `count` sequential requests on one keep-alive connection; latencies in ms. */
const clientCode = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const once = () => new Promise((resolve, reject) => {
  const started = performance.now();
  http.get({ host: '127.0.0.1', port: workerData.port, path: '/', agent, headers: { 'x-dev': workerData.dev } }, (res) => {
    res.resume();
    res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error('status ' + res.statusCode))));
  }).on('error', reject);
});
(async () => {
  for (let i = 0; i < 50; i++) await once();
  const ms = [];
  for (let i = 0; i < workerData.count; i++) ms.push(await once());
  agent.destroy();
  parentPort.postMessage(ms);
})().catch((error) => parentPort.postMessage({ error: error.message }));
`;

function client(port: number, count: number, dev: string): Promise<number[]> {
  const worker = new Worker(clientCode, { eval: true, workerData: { port, count, dev } });
  return new Promise((resolve, reject) => {
    worker.once('message', (message: number[] | { error: string }) => {
      void worker.terminate();
      if (Array.isArray(message)) resolve(message);
      else reject(new Error(message.error));
    });
    worker.once('error', reject);
  });
}

/** Latencies of `dev`'s requests sent to its holder b (direct) and to a (forwarded), alternating. */
async function measure(dev: string): Promise<{ direct: number[]; forwarded: number[] }> {
  const direct: number[] = [];
  const forwarded: number[] = [];
  for (let round = 0; round < rounds; round++) {
    direct.push(...(await client(b.inbound.port, perRound, dev)));
    forwarded.push(...(await client(a.inbound.port, perRound, dev)));
  }
  return { direct, forwarded };
}

const { direct, forwarded } = await measure('bench-0');
/** Memory after a full collection (`node --expose-gc`, as `npm run bench:replicas` runs it). */
const settledMemory = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage();
};
const memoryBefore = settledMemory();
// Many developers: 49 more sessions, alternately held by a and b; the last one (odd: b holds it)
// is measured, and each replica looks at the others before it.
for (let i = 1; i < manySessions; i++) {
  const dev = `bench-${i}`;
  held.push(await holdSession(i % 2 === 0 ? a : b, [a, b], dev, filterOf(dev), appPort));
}
const memoryAfter = settledMemory();
const many = await measure(`bench-${manySessions - 1}`);

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;
const summary = (values: number[]) => ({
  requests: values.length,
  p50: round3(percentile(values, 50)),
  p90: round3(percentile(values, 90)),
  p99: round3(percentile(values, 99)),
});
const result = {
  what: 'latency of one request of a session: sent to the replica holding its tunnel (single replica) vs to another replica that forwards it there (one hop)',
  unit: 'ms',
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg().map(round3) },
  measuredAt: new Date().toISOString(),
  singleReplica: summary(direct),
  viaAnotherReplica: summary(forwarded),
  added: {
    p50: round3(percentile(forwarded, 50) - percentile(direct, 50)),
    p99: round3(percentile(forwarded, 99) - percentile(direct, 99)),
  },
  [`with${manySessions}Sessions`]: {
    singleReplica: summary(many.direct),
    viaAnotherReplica: summary(many.forwarded),
    memoryPerSessionKiB: {
      rss: round3((memoryAfter.rss - memoryBefore.rss) / 1024 / (manySessions - 1)),
      heapUsed: round3((memoryAfter.heapUsed - memoryBefore.heapUsed) / 1024 / (manySessions - 1)),
      note: 'upper bound: both ends of each tunnel (agent and CLI) live in this process',
    },
  },
  notes:
    'loopback, all parts in one process but the client (a worker thread); in a cluster the hop also crosses the sending replica’s and the holder’s sidecars',
};
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));

await Promise.all([a.inbound.close(), b.inbound.close()]);
for (const session of held) await session.close();
app.close();
