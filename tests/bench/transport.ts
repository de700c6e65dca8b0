/**
 * Transport micro-benchmark: detour's tunnel (TunnelConnection over loopback TCP) against
 * node:http2 streams over loopback (h2c), doing the same work, to justify the transport choice.
 *   node tests/bench/transport.ts [--runs 3] [--bytes 268435456] [--requests 5000]
 * Per transport: throughput on 1 stream and on 100 concurrent streams (same total bytes), and
 * the round-trip of a 1 KB request / 1 KB response, each on a new stream as the agent uses them
 * (one at a time, and 100 in flight). Server on CPU 1, client on CPU 0, each its own process.
 * Writes tests/bench/transport-results.json and prints a table.
 */
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  INITIAL_STREAM_WINDOW,
  MAX_DATA_CHUNK,
  TunnelConnection,
  type TunnelStream,
} from '@detour/router/tunnel/index';
import { percentile } from './lib/h2load.ts';
import { freePort, start, stop, stopAll, waitExit, waitForPort } from './lib/processes.ts';
import { makeRecord, type ResultRecord, table } from './lib/results.ts';

const token = 'bench';
const self = fileURLToPath(import.meta.url);
type Transport = 'tunnel' | 'h2';
type Test = 'bulk1' | 'bulk100' | 'rtt1' | 'rtt100';

// ---------------------------------------------------------------- servers

function serveTunnel(port: number): void {
  net
    .createServer((socket) => {
      TunnelConnection.accept(socket, { tokens: [token], agent: 'bench' }).then(
        (connection) => connection.on('stream', (stream) => handleTunnelStream(stream)),
        () => socket.destroy(),
      );
    })
    .listen(port, '127.0.0.1');
}

function handleTunnelStream(stream: TunnelStream): void {
  stream.on('error', () => {});
  if (stream.open.kind === 'connect' && stream.open.host === 'sink') {
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    stream.on('end', () => stream.endWithHeaders({ bytes }));
  } else {
    stream.on('data', (chunk: Buffer) => stream.write(chunk));
    stream.on('end', () => stream.end());
  }
}

/** The same windows as the tunnel (1 MiB per stream) and frames as large as its DATA chunks. */
const h2Settings = { initialWindowSize: INITIAL_STREAM_WINDOW, maxFrameSize: MAX_DATA_CHUNK };
const h2ConnectionWindow = 64 * 1024 * 1024;

function serveH2(port: number): void {
  const server = http2.createServer({ settings: h2Settings });
  server.on('session', (session) =>
    session.once('remoteSettings', () => session.setLocalWindowSize(h2ConnectionWindow)),
  );
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    if (headers[':path'] === '/sink') {
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(String(bytes));
      });
    } else {
      stream.respond({ ':status': 200 });
      stream.on('data', (chunk: Buffer) => stream.write(chunk));
      stream.on('end', () => stream.end());
    }
  });
  server.listen(port, '127.0.0.1');
}

// ---------------------------------------------------------------- clients

interface Client {
  /** Sends `bytes` on one new stream to the sink; resolves when the server confirmed the count. */
  sink(bytes: number): Promise<void>;
  /** Sends `body` on one new stream to the echo and resolves when the whole echo came back. */
  echo(body: Buffer): Promise<void>;
  close(): void;
}

const chunk = Buffer.alloc(MAX_DATA_CHUNK, 0x62);

async function writeAll(
  stream: NodeJS.WritableStream & { writableNeedDrain: boolean },
  bytes: number,
): Promise<void> {
  let sent = 0;
  while (sent < bytes) {
    const n = Math.min(chunk.length, bytes - sent);
    sent += n;
    if (!stream.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await once(stream, 'drain');
  }
  stream.end();
}

async function tunnelClient(port: number): Promise<Client> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const connection = await TunnelConnection.connect(socket, { token, client: 'bench' });
  return {
    async sink(bytes) {
      const stream = connection.openStream({ kind: 'connect', host: 'sink', port: 1 });
      const confirmed = new Promise<void>((resolve, reject) => {
        stream.once('headers', (value: { bytes: number }) =>
          value.bytes === bytes ? resolve() : reject(new Error(`sink got ${value.bytes} of ${bytes}`)),
        );
        stream.once('error', reject);
      });
      stream.resume();
      await writeAll(stream, bytes);
      await confirmed;
    },
    async echo(body) {
      const stream = connection.openStream({ kind: 'connect', host: 'echo', port: 1 });
      let got = 0;
      stream.on('data', (c: Buffer) => {
        got += c.length;
      });
      stream.end(body);
      await once(stream, 'end');
      if (got !== body.length) throw new Error(`echo returned ${got} of ${body.length} bytes`);
    },
    close: () => connection.close(),
  };
}

async function h2Client(port: number): Promise<Client> {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: h2Settings });
  await once(session, 'connect');
  session.setLocalWindowSize(h2ConnectionWindow);
  return {
    async sink(bytes) {
      const stream = session.request({ ':method': 'POST', ':path': '/sink' });
      let answer = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        answer += c;
      });
      const ended = once(stream, 'end');
      await writeAll(stream, bytes);
      await ended;
      if (Number(answer) !== bytes) throw new Error(`sink got ${answer} of ${bytes}`);
    },
    async echo(body) {
      const stream = session.request({ ':method': 'POST', ':path': '/echo' });
      let got = 0;
      stream.on('data', (c: Buffer) => {
        got += c.length;
      });
      stream.end(body);
      await once(stream, 'end');
      if (got !== body.length) throw new Error(`echo returned ${got} of ${body.length} bytes`);
    },
    close: () => session.close(),
  };
}

async function runClient(
  transport: Transport,
  port: number,
  test: Test,
  bytes: number,
  requests: number,
): Promise<void> {
  const client = transport === 'tunnel' ? await tunnelClient(port) : await h2Client(port);
  // Warm-up, so both are measured with a JIT-compiled hot path.
  await client.sink(16 << 20);
  for (let i = 0; i < 500; i++) await client.echo(Buffer.alloc(1024));
  const t0 = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;
  let result: Record<string, number>;
  if (test === 'bulk1' || test === 'bulk100') {
    const streams = test === 'bulk1' ? 1 : 100;
    await Promise.all(Array.from({ length: streams }, () => client.sink(Math.floor(bytes / streams))));
    const s = elapsed();
    result = { gbps: (Math.floor(bytes / streams) * streams * 8) / s / 1e9 };
  } else {
    const inFlight = test === 'rtt1' ? 1 : 100;
    const body = Buffer.alloc(1024, 0x63);
    const latencies = new Float64Array(requests);
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < requests) {
          const i = next++;
          const t = process.hrtime.bigint();
          await client.echo(body);
          latencies[i] = Number(process.hrtime.bigint() - t) / 1e6;
        }
      }),
    );
    const s = elapsed();
    latencies.sort();
    result = { rps: requests / s, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
  }
  client.close();
  process.stdout.write(`BENCHJSON ${JSON.stringify(result)}\n`);
  process.exit(0);
}

// ---------------------------------------------------------------- orchestration

async function orchestrate(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      runs: { type: 'string', default: '3' },
      bytes: { type: 'string', default: String(256 << 20) },
      requests: { type: 'string', default: '5000' },
      out: { type: 'string', default: fileURLToPath(new URL('transport-results.json', import.meta.url)) },
    },
  });
  const runs = Math.min(10, Number(values.runs));
  const transports: Transport[] = ['tunnel', 'h2'];
  const ports = { tunnel: await freePort(), h2: await freePort() };
  const servers = transports.map((t) =>
    start(`${t}-server`, 'node', [self, 'serve', t, String(ports[t])], { cpu: 1 }),
  );
  try {
    for (const [i, t] of transports.entries())
      await waitForPort(ports[t], servers[i] as ReturnType<typeof start>);
    const tests: Test[] = ['bulk1', 'bulk100', 'rtt1', 'rtt100'];
    const samples = new Map<string, Record<string, number>[]>();
    for (let run = 0; run < runs; run++) {
      for (const test of tests) {
        for (const t of run % 2 ? [...transports].reverse() : transports) {
          const p = start(
            `${t}-client`,
            'node',
            [self, 'client', t, String(ports[t]), test, values.bytes, values.requests],
            { cpu: 0 },
          );
          const code = await waitExit(p, 120_000);
          const line = p
            .output()
            .split('\n')
            .find((l) => l.startsWith('BENCHJSON '));
          if (code !== 0 || !line)
            throw new Error(`${p.name} ${test} failed (${code}):\n${p.output().slice(-2000)}`);
          const r = JSON.parse(line.slice(10)) as Record<string, number>;
          samples.set(`${t}|${test}`, [...(samples.get(`${t}|${test}`) ?? []), r]);
          process.stdout.write(
            `  run ${run + 1}/${runs} ${t.padEnd(6)} ${test.padEnd(7)} ${JSON.stringify(r)}\n`,
          );
        }
      }
    }
    const get = (t: Transport, test: Test, key: string) =>
      (samples.get(`${t}|${test}`) ?? []).map((r) => r[key] as number);
    const notes = `server on CPU 1, client on CPU 0, loopback TCP; h2c with 1 MiB stream windows, 64 KiB frames, 64 MiB connection window (the tunnel's per-stream window is 1 MiB, DATA chunks 64 KiB); ${(Number(values.bytes) / 2 ** 20).toFixed(0)} MiB per bulk test; ${values.requests} round trips per latency test, a new stream each`;
    const rec = (c: string, metric: string, unit: string, test: Test, key: string) =>
      makeRecord({
        case: c,
        subject: 'detour tunnel',
        reference: 'node:http2',
        metric,
        unit,
        subjectSamples: get('tunnel', test, key),
        referenceSamples: get('h2', test, key),
        goal: null,
        notes,
      });
    const records: ResultRecord[] = [
      rec('transport bulk, 1 stream', 'throughput', 'Gbit/s', 'bulk1', 'gbps'),
      rec('transport bulk, 100 streams', 'throughput', 'Gbit/s', 'bulk100', 'gbps'),
      rec('transport 1 KB round trip, 1 in flight', 'p50 latency', 'ms', 'rtt1', 'p50Ms'),
      rec('transport 1 KB round trip, 1 in flight', 'p99 latency', 'ms', 'rtt1', 'p99Ms'),
      rec('transport 1 KB round trip, 100 in flight', 'requests/s', 'req/s', 'rtt100', 'rps'),
      rec('transport 1 KB round trip, 100 in flight', 'p99 latency', 'ms', 'rtt100', 'p99Ms'),
    ];
    const load = os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
    writeFileSync(
      values.out,
      `${JSON.stringify(
        records.map((r) => ({ ...r, loadAverage: load, at: new Date().toISOString() })),
        null,
        2,
      )}\n`,
    );
    process.stdout.write(`\n${table(records)}\n\nload average ${load}; results: ${values.out}\n`);
  } finally {
    for (const s of servers) await stop(s);
    await stopAll();
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'serve') {
  if (rest[0] === 'tunnel') serveTunnel(Number(rest[1]));
  else serveH2(Number(rest[1]));
} else if (mode === 'client') {
  const [transport, port, test, bytes, requests] = rest;
  runClient(transport as Transport, Number(port), test as Test, Number(bytes), Number(requests)).catch(
    (error: Error) => {
      process.stderr.write(`${error.stack}\n`);
      process.exit(1);
    },
  );
} else {
  orchestrate().catch((error: Error) => {
    process.stderr.write(`transport bench failed: ${error.stack}\n`);
    process.exitCode = 1;
  });
}
