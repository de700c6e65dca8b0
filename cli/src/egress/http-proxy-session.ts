import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ProxyContext } from './proxy-context.ts';
import { relay } from './relay.ts';

// Hop-by-hop headers (RFC 9110 7.6.1) plus the proxy's own; never forwarded.
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * The proxy's HTTP side, parsed by node's own HTTP server: `CONNECT host:port` tunnels and
 * absolute-URI requests (`GET http://payments/...`, what HTTP_PROXY clients send for plain http).
 * The proxy hands it connections whose first byte was not SOCKS.
 */
export function createHttpProxyServer(ctx: ProxyContext): http.Server {
  const server = http.createServer();
  server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    void serveConnect(req, socket, head, ctx);
  });
  server.on('request', (req, res) => {
    void serveForward(req, res, ctx);
  });
  return server;
}

async function serveConnect(req: http.IncomingMessage, socket: Duplex, head: Buffer, ctx: ProxyContext) {
  ctx.stats.httpConnect++;
  const authority = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(req.url ?? '');
  if (!authority) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nCONNECT needs host:port\n');
    return;
  }
  const host = authority[1] ?? authority[2] ?? '';
  const port = Number(authority[3]);
  let upstream: Duplex;
  try {
    upstream = await ctx.dial(host, port);
  } catch (err) {
    const { status, code, message } = failure(err);
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nX-Detour-Error: ${code}\r\n` +
        `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
    );
    return;
  }
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) upstream.write(head);
  await relay(socket, upstream);
}

async function serveForward(req: http.IncomingMessage, res: http.ServerResponse, ctx: ProxyContext) {
  let target: URL | undefined;
  try {
    target = new URL(req.url ?? '');
  } catch {}
  if (target?.protocol !== 'http:') {
    res.writeHead(400, { 'content-type': 'text/plain', 'x-detour-error': 'DETOUR_PROXY_BAD_REQUEST' });
    res.end('detour egress proxy: send absolute http:// URIs, or CONNECT for https\n');
    return;
  }
  ctx.stats.httpForward++;
  let upstream: Duplex;
  try {
    upstream = await ctx.dial(hostOf(target), Number(target.port || 80));
  } catch (err) {
    const { status, code, message } = failure(err);
    res.writeHead(status, { 'content-type': 'text/plain', 'x-detour-error': code });
    res.end(message);
    return;
  }
  const outgoing = http.request({
    method: req.method,
    path: `${target.pathname}${target.search}`,
    headers: withoutHopByHop(req.rawHeaders),
    setHost: false,
    createConnection: () => upstream as net.Socket,
  });
  outgoing.on('response', (incoming) => {
    res.writeHead(incoming.statusCode ?? 502, incoming.statusMessage, withoutHopByHop(incoming.rawHeaders));
    pipeline(incoming, res).catch(() => res.destroy());
  });
  const fail = () => {
    upstream.destroy();
    if (!res.headersSent) res.writeHead(502, { 'x-detour-error': 'ECONNRESET' }).end();
    else res.destroy();
  };
  outgoing.on('error', fail);
  await pipeline(req, outgoing).catch(fail);
}

function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

function withoutHopByHop(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (!hopByHop.has(name.toLowerCase())) out.push(name, raw[i + 1] ?? '');
  }
  return out;
}

function failure(err: unknown): { status: number; code: string; message: string } {
  const code = (err as { code?: string }).code ?? 'DETOUR_EGRESS_FAILED';
  const status = code === 'ETIMEDOUT' ? 504 : 502;
  return { status, code, message: `detour egress proxy: ${(err as Error).message ?? code}\n` };
}
