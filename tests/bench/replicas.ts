/**
 * Issue 13's benchmark: what the hop between agent replicas adds to a session's request, against
 * the request reaching the replica that holds the tunnel (`node tests/bench/replicas.ts`). On
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
import { LEASE_ANNOTATIONS } from '@detour/mesh-adapters';
import { SESSION_LABEL } from '@detour/mesh-adapters/session-records';
import { LocalAppForwarder } from '@detour/router/http/serve-from-tunnel';
import { compileFilter, type RouteFilter } from '@detour/router/match/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';
import { InboundListener } from '../../agent/src/inbound/inbound-listener.ts';
import { PeerForwarder } from '../../agent/src/peers/peer-forwarder.ts';
import { SessionDirectory } from '../../agent/src/peers/session-directory.ts';
import { SessionRegistry } from '../../agent/src/session-registry.ts';

const rounds = 10;
const perRound = 300;
const out = fileURLToPath(new URL('replicas-results.json', import.meta.url));
const filter: RouteFilter = { headers: { 'x-dev': { exact: 'bench' } } };

async function replica(name: string) {
  const registry = new SessionRegistry();
  const directory = new SessionDirectory(name);
  const inbound = await InboundListener.listen({
    registry,
    host: '127.0.0.1',
    peers: { directory, forwarder: new PeerForwarder(name, () => {}) },
  });
  return { registry, directory, inbound };
}

const app = http.createServer((_req, res) => res.end('local'));
await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
const a = await replica('agent-a');
const b = await replica('agent-b');
const tunnel = await tunnelPair();
const forwarder = new LocalAppForwarder({ localPort: () => (app.address() as { port: number }).port });
forwarder.attach(tunnel.client);
b.registry.register({
  id: 'bench',
  filter,
  matcher: compileFilter(filter),
  mode: 'steal',
  targetPort: 8080,
  tunnel: tunnel.server,
  registeredAt: new Date(),
});
a.directory.update({
  metadata: {
    name: 'detour-bench',
    labels: { [SESSION_LABEL]: 'bench' },
    annotations: {
      [LEASE_ANNOTATIONS.servedBy]: JSON.stringify({
        pod: 'agent-b',
        address: `127.0.0.1:${b.inbound.port}`,
        mode: 'steal',
        filter,
      }),
    },
  },
});

/** The client: `count` sequential requests on one keep-alive connection; latencies in ms. */
const clientCode = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const once = () => new Promise((resolve, reject) => {
  const started = performance.now();
  http.get({ host: '127.0.0.1', port: workerData.port, path: '/', agent, headers: { 'x-dev': 'bench' } }, (res) => {
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

function client(port: number, count: number): Promise<number[]> {
  const worker = new Worker(clientCode, { eval: true, workerData: { port, count } });
  return new Promise((resolve, reject) => {
    worker.once('message', (message: number[] | { error: string }) => {
      void worker.terminate();
      if (Array.isArray(message)) resolve(message);
      else reject(new Error(message.error));
    });
    worker.once('error', reject);
  });
}

const direct: number[] = [];
const forwarded: number[] = [];
for (let round = 0; round < rounds; round++) {
  direct.push(...(await client(b.inbound.port, perRound)));
  forwarded.push(...(await client(a.inbound.port, perRound)));
}

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
  notes:
    'loopback, all parts in one process but the client (a worker thread); in a cluster the hop also crosses the sending replica’s and the holder’s sidecars',
};
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));

await Promise.all([a.inbound.close(), b.inbound.close()]);
forwarder.close();
await tunnel.close();
app.close();
