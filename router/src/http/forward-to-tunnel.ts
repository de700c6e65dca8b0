/**
 * Agent side of inbound traffic: a request the mesh routed to the agent for a session goes down
 * that session's tunnel as an `http` stream, and the CLI's answer comes back to the client:
 * head, streamed body (each chunk written as it arrives: SSE works), trailers (gRPC status),
 * or, for an upgrade, raw bytes both ways after the 101.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Duplex, Readable } from 'node:stream';
import type { HeaderPairs, HttpStreamOpen } from '../tunnel/protocol.ts';
import { TunnelCode } from '../tunnel/protocol.ts';
import type { TunnelConnection } from '../tunnel/tunnel-connection.ts';
import { TunnelStreamError } from '../tunnel/tunnel-errors.ts';
import type { TunnelStream } from '../tunnel/tunnel-stream.ts';
import { headerPairsFromRaw, isGrpc, pairsFromHttp2 } from './header-pairs.ts';
import { errorCode, errorMessage } from './http-errors.ts';
import { Http1ResponseWriter, Http2ResponseWriter, type ResponseWriter } from './response-writer.ts';

/** The parts of a session the forwarder needs (an `AgentSession` has them). */
export interface TunnelTarget {
  id: string;
  mode: 'steal' | 'mirror';
  targetPort: number;
  tunnel: TunnelConnection;
}

/**
 * How a forwarded request ended, reported once per request (for metrics):
 * `forwarded` the CLI's response was relayed in full; `mirrored` a mirror copy was sent (its
 * answer discarded); `client_aborted` the client left first; `tunnel_failed` the stream was reset
 * or the tunnel closed (the client got a 502 or a cut response).
 */
export type ForwardOutcome = 'forwarded' | 'mirrored' | 'client_aborted' | 'tunnel_failed';
export type ForwardReport = (outcome: ForwardOutcome, session: TunnelTarget) => void;

const ignore: ForwardReport = () => {};
/** Request fields that only concern the hop to the agent: Host travels as `authority`, and the
 * agent already answered `Expect: 100-continue` itself. */
const dropHttp1 = new Set(['expect']);
const dropHttp2 = new Set(['expect', 'host']);

/** The text of the 502 a client gets when the developer's side cannot answer. */
export function unreachableText(sessionId: string, code: string, detail?: string): string {
  const first = `detour: the local process of session ${sessionId} is unreachable (${code})`;
  return detail ? `${first}\n${detail}` : first;
}

/** The stream-open of an HTTP/1.1 request; with `upgrade`, its Upgrade and Connection headers kept. */
function http1Open(req: IncomingMessage, session: TunnelTarget, upgrade: boolean): HttpStreamOpen {
  return {
    kind: 'http',
    session: session.id,
    mode: session.mode,
    targetPort: session.targetPort,
    httpVersion: '1.1',
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    authority: req.headers.host ?? '',
    headers: headerPairsFromRaw(req.rawHeaders, { keepUpgrade: upgrade, drop: dropHttp1 }),
    remoteAddress: req.socket.remoteAddress,
    upgrade,
  };
}

/** Forwards one HTTP/1.1 request (no upgrade) to the session's tunnel. */
export function forwardHttp1(
  req: IncomingMessage,
  res: ServerResponse,
  session: TunnelTarget,
  report: ForwardReport = ignore,
): void {
  const open = http1Open(req, session, false);
  req.on('error', noop);
  if (session.mode === 'mirror') {
    mirror(session, open, req, report);
    if (!res.headersSent) res.writeHead(202, { 'content-length': '0' }).end();
    return;
  }
  const opened = openStream(session, open, req, new Http1ResponseWriter(res), report);
  if (!opened) return;
  res.on('close', () => {
    if (res.writableFinished) return;
    opened.stream.reset(TunnelCode.cancel, 'the client closed the connection before the response ended');
    opened.outcome('client_aborted');
  });
  res.on('finish', () => {
    if (req.complete) return;
    // Answered before the client finished uploading (an early 413). Node forgets a request once its
    // response is done, so a client that then drops the connection never makes it error or close:
    // watch the socket, or the stream's request side would stay open forever.
    const socket = req.socket;
    const dropped = () => {
      if (!req.complete)
        opened.stream.reset(TunnelCode.cancel, 'the client stopped sending the request body');
    };
    socket.once('close', dropped);
    req.once('end', () => socket.off('close', dropped));
  });
}

/** Forwards one HTTP/2 request (h2c) to the session's tunnel; gRPC trailers included. */
export function forwardHttp2(
  h2stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  rawHeaders: readonly string[] | undefined,
  session: TunnelTarget,
  report: ForwardReport = ignore,
): void {
  const pairs: HeaderPairs = rawHeaders
    ? headerPairsFromRaw(rawHeaders, { drop: dropHttp2 })
    : pairsFromHttp2(headers);
  const open: HttpStreamOpen = {
    kind: 'http',
    session: session.id,
    mode: session.mode,
    targetPort: session.targetPort,
    httpVersion: '2',
    method: (headers[':method'] as string | undefined) ?? 'GET',
    path: (headers[':path'] as string | undefined) ?? '/',
    authority: (headers[':authority'] as string | undefined) ?? headers.host ?? '',
    headers: pairs,
    remoteAddress: h2stream.session?.socket?.remoteAddress,
    upgrade: false,
  };
  h2stream.on('error', noop);
  if (session.mode === 'mirror') {
    mirror(session, open, h2stream, report);
    if (!h2stream.headersSent && !h2stream.destroyed)
      h2stream.respond({ ':status': 202 }, { endStream: true });
    return;
  }
  const writer = new Http2ResponseWriter(h2stream, isGrpc(headers['content-type']));
  const opened = openStream(session, open, h2stream, writer, report);
  if (!opened) return;
  h2stream.on('close', () => {
    if (h2stream.writableFinished && h2stream.readableEnded && h2stream.rstCode === 0) return;
    opened.stream.reset(TunnelCode.cancel, `the client reset the HTTP/2 stream (code ${h2stream.rstCode})`);
    opened.outcome('client_aborted');
  });
}

/**
 * Forwards an HTTP/1.1 request with `Upgrade` (WebSocket, ...): the server's 'upgrade' event hands
 * over the raw socket. After the CLI reports 101 the stream carries raw bytes both ways; any other
 * status is relayed as an ordinary response and the connection closed.
 */
export function forwardUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  session: TunnelTarget,
  report: ForwardReport = ignore,
): void {
  const open = http1Open(req, session, true);
  socket.on('error', noop);
  let stream: TunnelStream;
  try {
    stream = session.tunnel.openStream(open);
  } catch (error) {
    writeRawError(
      socket,
      unreachableText(session.id, errorCode(error, TunnelCode.closed), errorMessage(error)),
    );
    report(`tunnel_failed`, session);
    return;
  }
  const outcome = once(report, session);
  let headSent = false;
  stream.on('headers', (block: unknown) => {
    if (headSent) return; // trailers of a declined upgrade: HTTP/1.1 without chunking cannot carry them
    const response = block as { status?: unknown; headers?: HeaderPairs };
    if (typeof response.status !== 'number' || response.status < 101 || !Array.isArray(response.headers))
      return;
    if (response.status < 200 && response.status !== 101) return;
    headSent = true;
    const switching = response.status === 101;
    socket.write(serializeHead(response.status, response.headers, switching));
    stream.pipe(socket);
  });
  stream.on('end', () => {
    if (!headSent)
      writeRawError(
        socket,
        unreachableText(session.id, 'DETOUR_NO_RESPONSE', 'the CLI ended the stream without a response'),
      );
    outcome('forwarded');
  });
  stream.on('error', (error) => {
    if (!headSent) writeRawError(socket, unreachableText(session.id, errorCode(error), errorMessage(error)));
    else socket.destroy();
    outcome('tunnel_failed');
  });
  socket.on('close', () => {
    if (!stream.destroyed && !stream.readableEnded) {
      stream.reset(TunnelCode.cancel, 'the client closed the upgraded connection');
      outcome('client_aborted');
    }
  });
  if (head.length > 0) stream.write(head);
  socket.pipe(stream);
  stream.resume();
}

/** Opens the stream and relays its response into `writer`; undefined when the tunnel is gone. */
function openStream(
  session: TunnelTarget,
  open: HttpStreamOpen,
  body: Readable,
  writer: ResponseWriter,
  report: ForwardReport,
): { stream: TunnelStream; outcome: (outcome: ForwardOutcome) => void } | undefined {
  let stream: TunnelStream;
  try {
    stream = session.tunnel.openStream(open);
  } catch (error) {
    body.resume();
    writer.fail(
      502,
      unreachableText(session.id, errorCode(error, TunnelCode.closed), errorMessage(error)),
      errorCode(error, TunnelCode.closed),
    );
    report('tunnel_failed', session);
    return undefined;
  }
  const outcome = once(report, session);
  let trailers: HeaderPairs | undefined;
  stream.on('headers', (block: unknown) => {
    if (writer.headSent) {
      const trailer = (block as { trailers?: unknown }).trailers;
      if (Array.isArray(trailer)) trailers = trailer as HeaderPairs;
      return;
    }
    const response = block as { status?: unknown; headers?: unknown };
    if (typeof response.status !== 'number' || !Array.isArray(response.headers)) {
      // Destroying with an error resets the peer and runs the 'error' path below: the client gets a 502.
      stream.destroy(new TunnelStreamError(TunnelCode.protocol, 'the CLI sent a malformed response head'));
      return;
    }
    try {
      writer.writeHead(response.status, response.headers as HeaderPairs);
    } catch (error) {
      stream.destroy(
        new TunnelStreamError(
          TunnelCode.protocol,
          `the CLI sent an invalid response head: ${errorMessage(error)}`,
        ),
      );
      return;
    }
    if (writer.headSent) stream.pipe(writer.body, { end: false });
  });
  stream.on('end', () => {
    if (!writer.headSent) {
      writer.fail(
        502,
        unreachableText(session.id, 'DETOUR_NO_RESPONSE', 'the CLI ended the stream without a response'),
        'DETOUR_NO_RESPONSE',
      );
      outcome('tunnel_failed');
      return;
    }
    writer.end(trailers);
    outcome('forwarded');
  });
  stream.on('error', (error) => {
    stream.unpipe();
    body.unpipe(stream);
    body.resume();
    const code = errorCode(error);
    writer.fail(502, unreachableText(session.id, code, errorMessage(error)), code);
    outcome('tunnel_failed');
  });
  body.pipe(stream);
  // Flowing from the start, so 'end' fires even for a response without body.
  stream.resume();
  return { stream, outcome };
}

/** Mirror: the copy goes to the developer, its answer is thrown away, and nothing it does (slow,
 * failing, reset) reaches the caller, who already has the real answer from the mesh. */
function mirror(session: TunnelTarget, open: HttpStreamOpen, body: Readable, report: ForwardReport): void {
  let stream: TunnelStream;
  try {
    stream = session.tunnel.openStream(open);
  } catch {
    body.resume();
    report('tunnel_failed', session);
    return;
  }
  stream.on('error', () => {
    body.unpipe(stream);
    body.resume();
  });
  stream.on('headers', noop);
  stream.resume();
  body.pipe(stream);
  report('mirrored', session);
}

function once(report: ForwardReport, session: TunnelTarget): (outcome: ForwardOutcome) => void {
  let reported = false;
  return (outcome) => {
    if (reported) return;
    reported = true;
    report(outcome, session);
  };
}

function noop(): void {}

const reasons: Record<number, string> = {
  101: 'Switching Protocols',
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  502: 'Bad Gateway',
};

/** An HTTP/1.1 response head for a raw (upgrade) socket. */
export function serializeHead(status: number, headers: HeaderPairs, switching: boolean): string {
  let head = `HTTP/1.1 ${status} ${reasons[status] ?? 'Status'}\r\n`;
  for (const [name, value] of headers) {
    if (!switching && name === 'connection') continue;
    head += `${name}: ${value}\r\n`;
  }
  // A declined upgrade's body runs to the end of the connection.
  if (!switching) head += 'connection: close\r\n';
  return `${head}\r\n`;
}

function writeRawError(socket: Duplex, text: string): void {
  if (socket.destroyed) return;
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
