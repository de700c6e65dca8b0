/**
 * Both ends of the egress cases (3 and 4), one process each:
 *   sink PORT                      counts the bytes of each connection, answers the count when it ends
 *   hold PORT                      keeps every connection open and echoes what it gets
 *   send HOST PORT BYTES direct|proxy   writes BYTES to the sink, directly or through HTTP_PROXY
 *   open HOST PORT COUNT SECONDS   opens COUNT connections through HTTP_PROXY, checks each with a
 *                                  round-trip, prints READY, holds them until SIGTERM or SECONDS
 *   connect HOST PORT COUNT        COUNT connections one after another with plain net.connect (under
 *                                  the layer they go through the tunnel), each timed from connect()
 *                                  to the echo of its first byte
 *   pingpong HOST PORT COUNT direct|proxy   one connection (net.connect, or HTTP CONNECT through
 *                                  HTTP_PROXY), then COUNT one-byte round trips on it, each timed
 * Results are one line `BENCHJSON {...}` on stdout.
 */
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
const report = (value: unknown) => process.stdout.write(`BENCHJSON ${JSON.stringify(value)}\n`);

function sink(port: number): void {
  net
    .createServer((socket) => {
      let bytes = 0;
      socket.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      socket.on('end', () => {
        const answer = Buffer.alloc(8);
        answer.writeBigUInt64BE(BigInt(bytes));
        socket.end(answer);
      });
      socket.on('error', () => {});
    })
    .listen(port, '127.0.0.1');
}

function hold(port: number): void {
  net
    .createServer((socket) => {
      socket.on('data', (chunk: Buffer) => socket.write(chunk));
      socket.on('error', () => {});
    })
    .listen(port, '127.0.0.1');
}

/** A TCP connection to host:port, through the HTTP CONNECT proxy the session put in HTTP_PROXY. */
function dial(host: string, port: number, viaProxy: boolean): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (!viaProxy) {
      const socket = net.connect(port, host, () => resolve(socket));
      socket.once('error', reject);
      return;
    }
    const proxyUrl = process.env.HTTP_PROXY;
    if (!proxyUrl) {
      reject(new Error('HTTP_PROXY is not set: run this under `detour exec`'));
      return;
    }
    const proxy = new URL(proxyUrl);
    const socket = net.connect(Number(proxy.port), proxy.hostname);
    socket.once('error', reject);
    socket.once('connect', () =>
      socket.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`),
    );
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 8192) reject(new Error('proxy answer head too long'));
        return;
      }
      socket.off('data', onData);
      const status = head.subarray(0, end).toString('latin1').split('\r\n')[0] ?? '';
      if (!/^HTTP\/1\.[01] 200/.test(status)) {
        socket.destroy();
        reject(new Error(`proxy refused CONNECT ${host}:${port}: ${status}`));
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length) socket.unshift(rest);
      resolve(socket);
    };
    socket.on('data', onData);
  });
}

async function send(host: string, port: number, total: number, viaProxy: boolean): Promise<void> {
  const socket = await dial(host, port, viaProxy);
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const started = process.hrtime.bigint();
  const answer = new Promise<number>((resolve, reject) => {
    let got = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
    });
    socket.once('end', () =>
      got.length === 8
        ? resolve(Number(got.readBigUInt64BE(0)))
        : reject(new Error('no byte count from the sink')),
    );
    socket.once('error', reject);
  });
  let sent = 0;
  while (sent < total) {
    const n = Math.min(chunk.length, total - sent);
    sent += n;
    if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n)))
      await new Promise((r) => socket.once('drain', r));
  }
  socket.end();
  const received = await answer;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  report({ bytes: received, seconds, gbps: (received * 8) / seconds / 1e9, complete: received === total });
}

async function open(host: string, port: number, count: number, seconds: number): Promise<void> {
  const sockets: net.Socket[] = [];
  const batch = 100;
  for (let i = 0; i < count; i += batch) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, async () => {
        const socket = await dial(host, port, true);
        socket.on('error', () => {});
        socket.write('x');
        await new Promise((resolve) => socket.once('data', resolve));
        return socket;
      }),
    );
    sockets.push(...opened);
  }
  report({ ready: true, open: sockets.length, pid: process.pid });
  const done = () => {
    for (const socket of sockets) socket.destroy();
    process.exit(0);
  };
  process.once('SIGTERM', done);
  setTimeout(done, seconds * 1000);
}

async function connectLatency(host: string, port: number, count: number): Promise<void> {
  const millis: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint();
    const socket = net.connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => socket.write('x'));
      socket.once('data', () => resolve());
    });
    millis.push(Number(process.hrtime.bigint() - started) / 1e6);
    socket.destroy();
  }
  report({ count, ...percentiles(millis) });
}

async function pingPong(host: string, port: number, count: number, viaProxy: boolean): Promise<void> {
  const socket = await dial(host, port, viaProxy);
  socket.setNoDelay(true);
  const millis: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint();
    socket.write('x');
    await new Promise((resolve) => socket.once('data', resolve));
    millis.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  socket.destroy();
  report({ count, ...percentiles(millis) });
}

function percentiles(millis: number[]): { p50Ms: number; p99Ms: number } {
  millis.sort((a, b) => a - b);
  const at = (q: number) => millis[Math.min(millis.length - 1, Math.floor(q * millis.length))] ?? Number.NaN;
  return { p50Ms: at(0.5), p99Ms: at(0.99) };
}

const run: Record<string, () => void | Promise<void>> = {
  sink: () => sink(Number(args[0])),
  hold: () => hold(Number(args[0])),
  send: () => send(args[0] ?? '127.0.0.1', Number(args[1]), Number(args[2]), args[3] === 'proxy'),
  open: () => open(args[0] ?? '127.0.0.1', Number(args[1]), Number(args[2]), Number(args[3])),
  connect: () => connectLatency(args[0] ?? '127.0.0.1', Number(args[1]), Number(args[2])),
  pingpong: () => pingPong(args[0] ?? '127.0.0.1', Number(args[1]), Number(args[2]), args[3] === 'proxy'),
};
const selected = run[mode ?? ''];
if (!selected) {
  process.stderr.write(`usage: egress-peer.ts sink|hold|send|open|connect|pingpong ...\n`);
  process.exit(2);
}
Promise.resolve(selected()).catch((error: Error) => {
  process.stderr.write(`egress-peer ${mode}: ${error.message}\n`);
  process.exit(1);
});
