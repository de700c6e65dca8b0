/**
 * The test app: one port speaking HTTP/1.1 and h2c (prior knowledge), as a real service would.
 * It stands for the developer's local app (run under `detour exec`), for the real pods (the agent's
 * upstream) and for a service the local app calls. Every answer names the app, so a test can tell
 * which one answered.
 *
 *   node http-app.ts --name local --port 3000 [--host 127.0.0.1]
 *
 * Routes: any path echoes {app, method, path, httpVersion, headers}; PUT/POST /upload answers the
 * body's sha256; GET /download?bytes=N streams payload bytes; GET /barrier?n=N holds each request
 * until N are in flight; GET /hang never answers; GET /abort sends part of a body then resets;
 * GET /stats; GET /egress?url=U[&client=http|fetch|undici|grpc] calls U (for grpc a target, whose
 * Echo/Say it calls) and relays the answer; /ws is a WebSocket echo.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { request as undiciRequest } from 'undici';
import { WebSocketServer } from 'ws';
import { payloadStream } from '../payload.ts';
import { type EchoMessage, echoClient } from './echo-proto.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'app' },
    port: { type: 'string', default: '3000' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});
const name = values.name ?? 'app';

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const stats = { requests: 0, inFlight: 0, peakInFlight: 0, aborted: 0, barrierReleased: 0 };
let barrierWaiters: Array<() => void> = [];

/** Calls `target` with one of the clients an app may use; answers the status and the body text. */
async function callOut(client: string, target: string): Promise<{ status: number; body: string }> {
  switch (client) {
    case 'fetch': {
      const answer = await fetch(target, { signal: AbortSignal.timeout(10_000) });
      return { status: answer.status, body: await answer.text() };
    }
    case 'undici': {
      const answer = await undiciRequest(target, { headersTimeout: 10_000 });
      return { status: answer.statusCode, body: await answer.body.text() };
    }
    case 'grpc': {
      const client = echoClient(target);
      try {
        const reply = await new Promise<EchoMessage>((resolve, reject) =>
          client.Say(
            { text: 'egress', app: '' },
            new grpc.Metadata(),
            { deadline: Date.now() + 10_000 },
            (error, answer) => (error ? reject(error) : resolve(answer)),
          ),
        );
        return { status: 200, body: JSON.stringify(reply) };
      } finally {
        client.close();
      }
    }
    default:
      return await new Promise((resolve, reject) => {
        const outbound = http.get(target, { timeout: 10_000 }, (answer) => {
          let body = '';
          answer.setEncoding('utf8').on('data', (chunk: string) => {
            body += chunk;
          });
          answer.on('end', () => resolve({ status: answer.statusCode ?? 0, body }));
        });
        outbound.on('timeout', () => outbound.destroy(new Error('timed out')));
        outbound.on('error', reject);
      });
  }
}

function json(res: Res, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  (res as http.ServerResponse).writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-app': name,
  });
  res.end(text);
}

function handle(req: Req, res: Res): void {
  const url = new URL(req.url ?? '/', 'http://app');
  stats.requests += 1;
  stats.inFlight += 1;
  stats.peakInFlight = Math.max(stats.peakInFlight, stats.inFlight);
  res.on('close', () => {
    stats.inFlight -= 1;
    // Closed before the app ended the response: the caller (or something on the way) reset it.
    // (Not 'finish': the HTTP/2 compat response emits it even for a reset stream.)
    if (!res.writableEnded) stats.aborted += 1;
  });
  switch (url.pathname) {
    case '/upload': {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      req.on('end', () => json(res, 200, { app: name, bytes, sha256: hash.digest('hex') }));
      return;
    }
    case '/download': {
      const bytes = Number(url.searchParams.get('bytes') ?? 0);
      (res as http.ServerResponse).writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': bytes,
        'x-app': name,
      });
      const body = payloadStream(bytes);
      body.pipe(res as http.ServerResponse);
      res.on('close', () => body.destroy());
      return;
    }
    case '/barrier': {
      const n = Number(url.searchParams.get('n') ?? 1);
      const timeoutMs = Number(url.searchParams.get('timeoutMs') ?? 20_000);
      const timer = setTimeout(
        () => json(res, 504, { app: name, barrier: 'timeout', inFlight: stats.inFlight }),
        timeoutMs,
      );
      barrierWaiters.push(() => {
        clearTimeout(timer);
        stats.barrierReleased += 1;
        json(res, 200, { app: name, barrier: 'released' });
      });
      if (barrierWaiters.length >= n) {
        const waiters = barrierWaiters;
        barrierWaiters = [];
        for (const release of waiters) release();
      }
      return;
    }
    case '/hang':
      (res as http.ServerResponse).writeHead(200, { 'content-type': 'text/plain', 'x-app': name });
      (res as http.ServerResponse).write('started\n');
      return;
    case '/abort': {
      (res as http.ServerResponse).writeHead(200, {
        'content-type': 'application/octet-stream',
        'x-app': name,
      });
      (res as http.ServerResponse).write(Buffer.alloc(64 * 1024, 1));
      setTimeout(() => {
        if ('stream' in res) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else res.socket?.destroy();
      }, 100);
      return;
    }
    case '/stats':
      json(res, 200, { app: name, ...stats });
      return;
    case '/egress': {
      // The call an app makes while handling a request, with the client the test names: under the
      // layer each of them must leave from the agent and carry the request's routing header.
      const target = url.searchParams.get('url') ?? '';
      callOut(url.searchParams.get('client') ?? 'http', target).then(
        (answer) => json(res, 200, { app: name, ...answer }),
        (error: NodeJS.ErrnoException) =>
          json(res, 502, {
            app: name,
            error: error.message,
            code: error.code ?? (error.cause as NodeJS.ErrnoException)?.code,
          }),
      );
      return;
    }
    default:
      req.resume();
      req.on('end', () =>
        json(res, 200, {
          app: name,
          method: req.method,
          path: req.url,
          httpVersion: req.httpVersion,
          headers: req.headers,
        }),
      );
  }
}

const isWebSocketPath = (req: http.IncomingMessage) =>
  new URL(req.url ?? '/', 'http://app').pathname === '/ws';
// Other upgrade requests (the JDK HttpClient's h2c upgrade on http:// URLs) are answered as plain
// HTTP/1.1, as servers that do not speak h2c do.
const h1 = http.createServer({ keepAliveTimeout: 30_000, shouldUpgradeCallback: isWebSocketPath }, handle);
const h2 = http2.createServer({}, handle);
const wss = new WebSocketServer({ noServer: true });
wss.on('connection', (socket, req) => {
  socket.send(JSON.stringify({ app: name, hello: req.headers['x-dev'] ?? null }));
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});
h1.on('upgrade', (req, socket, head) => {
  if (!isWebSocketPath(req)) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

const preface = Buffer.from('PRI * HTTP/2.0\r\n');
/**
 * Sniffs the first bytes: the HTTP/2 connection preface goes to the h2c server, anything else to
 * HTTP/1.1. Without Nagle, as node:http's own server (a plain net server would lose that default).
 */
const server = net.createServer({ noDelay: true }, (socket) => {
  socket.once('readable', function sniff() {
    const head: Buffer | null = socket.read();
    if (!head) return socket.once('readable', sniff);
    socket.unshift(head);
    const isH2 = head
      .subarray(0, preface.length)
      .equals(preface.subarray(0, Math.min(head.length, preface.length)));
    (isH2 ? h2 : h1).emit('connection', socket);
  });
  socket.on('error', () => {});
});
server.listen(Number(values.port), values.host, () => {
  process.stdout.write(
    `${JSON.stringify({ event: 'app.listening', app: name, port: Number(values.port) })}\n`,
  );
});
process.on('SIGTERM', () => process.exit(0));
