/**
 * The agent's inbound listener: the port the mesh routes a session's requests to (and, without a
 * mesh, every request of the service). One port speaks HTTP/1.1 and h2c with prior knowledge: the
 * first bytes of a connection are compared with the HTTP/2 preface and the socket is handed to
 * the matching server. Each request goes to the first session whose filter matches it, else to
 * the replica of this agent that holds such a session, else to the upstream when one is
 * configured, else gets a 404 that says what the sessions match on.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import {
  type ForwardOutcome,
  type ForwardReport,
  forwardHttp1,
  forwardHttp2,
  forwardUpgrade,
  serializeHead,
} from '@detour/router/http/forward-to-tunnel';
import { H2cSessionPool } from '@detour/router/http/h2c-session-pool';
import { grpcMessage, headerPairsFromRaw, isGrpc } from '@detour/router/http/header-pairs';
import { errorCode, errorMessage } from '@detour/router/http/http-errors';
import { http1Agent } from '@detour/router/http/http1-relay';
import {
  Http1ResponseWriter,
  Http2ResponseWriter,
  type ResponseWriter,
} from '@detour/router/http/response-writer';
import { requestUpstream, type UpstreamTarget } from '@detour/router/http/upstream-request';
import { formatFilter, requestHeader } from '@detour/router/match/index';
import { type HeaderPairs, PROBE_HEADER } from '@detour/router/tunnel/protocol';
import { parseHostPort } from '../agent-config.ts';
import {
  type ArrivedFromPeer,
  arrivedFromPeer,
  http1FromPeer,
  type PeerForwarder,
} from '../peers/peer-forwarder.ts';
import type { PeerSession, SessionDirectory } from '../peers/session-directory.ts';
import type { RouteProbes } from '../route-probe.ts';
import type { InboundRequest, SessionRegistry } from '../session-registry.ts';
import type { Http1Passthrough } from './http1-passthrough.ts';
import { InboundMetrics } from './inbound-metrics.ts';
import { listenOn } from './listen-on.ts';
import { MetricsRegistry } from './metrics.ts';

const h2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const keepAliveMs = 65 * 60_000;
/** A connection that sends nothing is dropped (a client opens a connection to use it). */
const firstBytesTimeoutMs = 60_000;

export interface InboundListenerOptions {
  registry: SessionRegistry;
  /** Default 0.0.0.0: the pod's sidecar (or, without a mesh, the Service) connects from outside. */
  host?: string;
  /** Default 0 (any free port; read `port` after `listen`). */
  port?: number;
  /** `host:port` (or its parts) that receives requests no session matches (no-mesh mode). */
  upstream?: string | { host: string; port: number };
  /** Where the listener registers its metrics; a fresh registry when omitted. */
  metrics?: MetricsRegistry;
  /** Route probes this agent sent: answered here, never forwarded. */
  probes?: RouteProbes;
  /** The other replicas of this agent: requests of the sessions they hold are forwarded to them. */
  peers?: { directory: SessionDirectory; forwarder: PeerForwarder };
}

/** What a filter matches on, read straight from the header list the request arrived with. */
function http1Matchable(req: IncomingMessage): InboundRequest {
  return {
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    authority: req.headers.host,
    headers: req.rawHeaders,
  };
}

/** The same for an HTTP/2 stream; the pseudo-headers in `raw` never equal a filter's header name. */
function http2Matchable(headers: IncomingHttpHeaders, raw: readonly string[]): InboundRequest {
  return {
    method: (headers[':method'] as string | undefined) ?? 'GET',
    path: (headers[':path'] as string | undefined) ?? '/',
    authority: (headers[':authority'] as string | undefined) ?? headers.host,
    headers: raw,
  };
}

export class InboundListener {
  readonly metrics: MetricsRegistry;
  readonly stats: InboundMetrics;
  private readonly registry: SessionRegistry;
  private readonly probes: RouteProbes | undefined;
  private readonly peers: InboundListenerOptions['peers'];
  private readonly server: net.Server;
  private readonly http1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly sockets = new Set<Socket>();
  private readonly upstream: UpstreamTarget | undefined;
  private readonly passthrough: Http1Passthrough | undefined;
  private readonly report: ForwardReport;
  private closing = false;

  private constructor(
    options: InboundListenerOptions,
    passthroughClass: typeof Http1Passthrough | undefined,
  ) {
    this.registry = options.registry;
    this.probes = options.probes;
    this.peers = options.peers;
    this.metrics = options.metrics ?? new MetricsRegistry();
    this.stats = new InboundMetrics(this.metrics, this.registry, () => this.sockets);
    const stats = this.stats;
    this.report = (outcome: ForwardOutcome) => {
      stats.requests[outcome].inc();
      if (outcome === 'tunnel_failed') stats.errors.tunnel.inc();
    };
    if (options.upstream) {
      const { host, port } =
        typeof options.upstream === 'string' ? parseHostPort(options.upstream) : options.upstream;
      this.upstream = {
        host,
        port,
        agent: http1Agent(256),
        h2: new H2cSessionPool(),
      };
      this.passthrough =
        passthroughClass &&
        new passthroughClass(host, port, {
          upstreamFailed: () => stats.errors.upstream.inc(),
        });
    }
    // Idle keep-alive connections stay open longer than Envoy keeps its upstream connections idle
    // (1 h by default): if the agent closed first, Envoy could send a request on a connection being
    // closed and answer 503. Requests themselves have no deadline (streams, WebSockets, SSE).
    this.http1 = http.createServer({
      noDelay: true,
      keepAliveTimeout: keepAliveMs,
      requestTimeout: 0,
      headersTimeout: 60_000,
    });
    this.http1.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res));
    this.http1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    this.http1.on('clientError', (error: Error, socket: Duplex) => {
      stats.errors.client.inc();
      if (socket.writable && !(socket as Socket).destroyed)
        socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      else socket.destroy(error);
    });
    this.h2 = http2.createServer({ settings: { enablePush: false } });
    this.h2.on(
      'stream',
      (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) =>
        this.onStream(stream, headers, raw),
    );
    this.h2.on('sessionError', () => stats.errors.client.inc());
    this.server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket));
  }

  static async listen(options: InboundListenerOptions): Promise<InboundListener> {
    // The pass-through (no-mesh mode) runs on undici, a large module: loaded only when configured.
    const passthrough = options.upstream
      ? (await import('./http1-passthrough.ts')).Http1Passthrough
      : undefined;
    const listener = new InboundListener(options, passthrough);
    await listenOn(listener.server, options.port ?? 0, options.host ?? '0.0.0.0');
    return listener;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Inbound connections open now. */
  get connections(): number {
    return this.sockets.size;
  }

  get listening(): boolean {
    return this.server.listening && !this.closing;
  }

  /** Stops accepting, closes every inbound connection and the upstream pools. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    void this.upstream?.agent.destroy();
    this.upstream?.h2?.close();
    this.peers?.forwarder.close();
    await Promise.all([closed, this.passthrough?.close()]);
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.stats.closedBytesReceived += socket.bytesRead;
      this.stats.closedBytesSent += socket.bytesWritten;
    });
    socket.on('error', () => {});
    this.sniff(socket, Buffer.alloc(0));
  }

  /** Reads until the first bytes tell HTTP/2's preface from an HTTP/1.1 request line. */
  private sniff(socket: Socket, seen: Buffer): void {
    const silent = () => {
      this.stats.errors.sniff.inc();
      socket.destroy();
    };
    socket.setTimeout(firstBytesTimeoutMs);
    socket.once('timeout', silent);
    socket.once('data', (chunk: Buffer) => {
      // The server the socket goes to sets its own timeouts.
      socket.setTimeout(0);
      socket.off('timeout', silent);
      socket.pause();
      const bytes = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const compared = Math.min(bytes.length, h2Preface.length);
      const prefixOfPreface = bytes.subarray(0, compared).equals(h2Preface.subarray(0, compared));
      if (prefixOfPreface && bytes.length < h2Preface.length) {
        socket.resume();
        this.sniff(socket, bytes);
        return;
      }
      socket.unshift(bytes);
      if (prefixOfPreface) {
        // The HTTP/2 session reads what the socket buffered itself; resuming would lose it.
        this.stats.connections.h2c.inc();
        this.h2.emit('connection', socket);
      } else {
        // The HTTP/1.1 parser gets the buffered bytes as 'data' once the socket flows again.
        this.stats.connections.http1.inc();
        this.http1.emit('connection', socket);
        socket.resume();
      }
    });
  }

  /**
   * The replica holding the session a request of no local session belongs to; never for a request
   * a replica already forwarded (the session moved, or ended, since that replica looked).
   */
  private peerFor(request: InboundRequest, fromPeer: ArrivedFromPeer | undefined): PeerSession | undefined {
    return fromPeer ? undefined : this.peers?.directory.match(request);
  }

  /** Relays a request to the replica that holds its session; the answer comes back through `writer`. */
  private toPeer(
    peer: PeerSession,
    request: {
      method: string;
      path: string;
      authority: string;
      headers: HeaderPairs;
      httpVersion: '1.1' | '2';
    },
    body: Readable,
    writer: ResponseWriter,
    clientGone: (abort: () => void) => void,
  ): void {
    this.stats.requests.to_peer.inc();
    const exchange = (this.peers as NonNullable<InboundListenerOptions['peers']>).forwarder.forward(
      peer,
      request,
      body,
      writer,
    );
    clientGone(() => exchange.abort());
  }

  private answerProbe(req: IncomingMessage, res: ServerResponse, nonce: string): void {
    req.resume();
    res.writeHead(204, { [PROBE_HEADER]: nonce });
    res.end();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const fromPeer = http1FromPeer(req);
    const probe = req.headers[PROBE_HEADER];
    if (this.probes?.answer(probe)) {
      this.answerProbe(req, res, probe as string);
      return;
    }
    const matchable = http1Matchable(req);
    const session = this.registry.match(matchable);
    if (session) {
      forwardHttp1(req, res, session, this.report);
      return;
    }
    const peer = this.peerFor(matchable, fromPeer);
    if (peer) {
      req.on('error', () => {});
      this.toPeer(
        peer,
        {
          method: matchable.method,
          path: matchable.path,
          authority: matchable.authority ?? '',
          headers: headerPairsFromRaw(req.rawHeaders, { drop: dropForwarded }),
          httpVersion: '1.1',
        },
        req,
        new Http1ResponseWriter(res),
        (abort) =>
          res.on('close', () => {
            if (!res.writableFinished) abort();
          }),
      );
      return;
    }
    if (this.passthrough) {
      this.stats.requests.passthrough.inc();
      this.passthrough.forward(req, res);
      return;
    }
    if (this.peers && typeof probe === 'string') {
      // A route probe another replica of this agent sent, which no session here or there takes
      // (doctor's probe of the agent Service): it came back to this agent, so it proves the route.
      this.answerProbe(req, res, probe);
      return;
    }
    this.stats.requests.no_session.inc();
    const text = this.noSessionText(
      req.method ?? 'GET',
      req.url ?? '/',
      (name) => requestHeader(matchable, name),
      fromPeer,
    );
    req.resume();
    res.writeHead(404, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'x-detour-error': 'DETOUR_NO_SESSION',
    });
    res.end(text);
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, delivered: string[]): void {
    const fromPeer = arrivedFromPeer(delivered, ':authority');
    const raw = fromPeer?.raw ?? delivered;
    if (fromPeer) headers[':authority'] = fromPeer.authority;
    const matchable = http2Matchable(headers, raw);
    const session = this.registry.match(matchable);
    if (session) {
      forwardHttp2(stream, headers, raw, session, this.report);
      return;
    }
    stream.on('error', () => {});
    const peer = this.peerFor(matchable, fromPeer);
    if (peer) {
      this.toPeer(
        peer,
        {
          method: matchable.method,
          path: matchable.path,
          authority: matchable.authority ?? '',
          headers: headerPairsFromRaw(raw, { drop: dropForwarded }),
          httpVersion: '2',
        },
        stream,
        new Http2ResponseWriter(stream, isGrpc(headers['content-type'])),
        (abort) =>
          stream.on('close', () => {
            if (!stream.writableFinished || stream.rstCode !== 0) abort();
          }),
      );
      return;
    }
    if (this.upstream) {
      this.stats.requests.passthrough.inc();
      const writer = new Http2ResponseWriter(stream, isGrpc(headers['content-type']));
      const upstream = this.upstream;
      const exchange = requestUpstream(
        upstream,
        {
          method: matchable.method,
          path: matchable.path,
          authority: (headers[':authority'] as string | undefined) ?? '',
          headers: headerPairsFromRaw(raw, { drop: dropForwarded }),
          httpVersion: '2',
        },
        stream,
        writer,
        (error, headSent) => {
          this.stats.errors.upstream.inc();
          const code = errorCode(error, 'UPSTREAM_ERROR');
          return {
            status: headSent ? 500 : 502,
            text: `detour: the upstream ${upstream.host}:${upstream.port} failed (${code}): ${errorMessage(error)}`,
            code,
          };
        },
      );
      stream.on('close', () => {
        if (!stream.writableFinished || stream.rstCode !== 0) exchange.abort();
      });
      return;
    }
    this.stats.requests.no_session.inc();
    const text = this.noSessionText(
      matchable.method,
      matchable.path,
      (name) => requestHeader(matchable, name),
      fromPeer,
    );
    stream.resume();
    if (isGrpc(headers['content-type'])) {
      // A gRPC client shows grpc-message, never an HTTP body: answer "trailers only" so the
      // developer reads why. UNAVAILABLE, as for any request the infrastructure cannot route.
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': '14',
          'grpc-message': grpcMessage(text.trimEnd()),
          'x-detour-error': 'DETOUR_NO_SESSION',
        },
        { endStream: true },
      );
      return;
    }
    stream.respond({
      ':status': 404,
      'content-type': 'text/plain; charset=utf-8',
      'x-detour-error': 'DETOUR_NO_SESSION',
    });
    stream.end(text);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const fromPeer = http1FromPeer(req);
    const matchable = http1Matchable(req);
    const session = this.registry.match(matchable);
    if (session) {
      forwardUpgrade(req, socket, head, session, this.report);
      return;
    }
    socket.on('error', () => {});
    const upgradeHeaders = () =>
      headerPairsFromRaw(req.rawHeaders, { keepUpgrade: true, drop: dropForwarded });
    const peer = this.peerFor(matchable, fromPeer);
    if (peer && this.peers) {
      this.stats.requests.to_peer.inc();
      const { forwarder } = this.peers;
      this.proxyUpgrade(
        req,
        socket,
        head,
        forwarder.target(peer),
        forwarder.headers(upgradeHeaders(), matchable.authority ?? '', peer),
        (error) => forwarder.failure(peer, error),
      );
      return;
    }
    if (this.upstream) {
      this.stats.requests.passthrough.inc();
      const upstream = this.upstream;
      this.proxyUpgrade(req, socket, head, upstream, upgradeHeaders(), (error) => {
        this.stats.errors.upstream.inc();
        return `detour: the upstream ${upstream.host}:${upstream.port} failed (${errorCode(error, 'UPSTREAM_ERROR')}): ${error.message}`;
      });
      return;
    }
    this.stats.requests.no_session.inc();
    const text = this.noSessionText(
      req.method ?? 'GET',
      req.url ?? '/',
      (name) => requestHeader(matchable, name),
      fromPeer,
    );
    socket.end(
      `HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
    );
  }

  /**
   * An upgrade no local session claims goes to the replica holding its session, or the upstream,
   * with `pairs` as its headers; raw bytes both ways after the 101. `failure` says why it failed.
   */
  private proxyUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    upstream: UpstreamTarget,
    pairs: HeaderPairs,
    failure: (error: Error) => string,
  ): void {
    const headers: string[] = [];
    for (const [name, value] of pairs) headers.push(name, value);
    const upstreamReq = http.request({
      host: upstream.host,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      agent: false,
    });
    const fail = (error: Error) => {
      const text = `${failure(error)}\n`;
      if (socket.destroyed) return;
      socket.end(
        `HTTP/1.1 502 Bad Gateway\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
      );
    };
    upstreamReq.on('error', fail);
    socket.on('close', () => upstreamReq.destroy());
    upstreamReq.on('upgrade', (res: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer) => {
      socket.write(
        serializeHead(res.statusCode ?? 101, headerPairsFromRaw(res.rawHeaders, { keepUpgrade: true }), true),
      );
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      upstreamSocket.on('error', () => socket.destroy());
      socket.on('close', () => upstreamSocket.destroy());
      upstreamSocket.on('close', () => socket.destroy());
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
    });
    upstreamReq.on('response', (res: IncomingMessage) => {
      socket.write(serializeHead(res.statusCode ?? 502, headerPairsFromRaw(res.rawHeaders), false));
      res.pipe(socket);
      res.on('error', () => socket.destroy());
    });
    upstreamReq.end();
  }

  /** 404 text: which sessions this agent holds, what they match on, and what this request carried. */
  private noSessionText(
    method: string,
    path: string,
    header: (name: string) => string | undefined,
    fromPeer: ArrivedFromPeer | undefined,
  ): string {
    const sessions = this.registry.routed();
    const lines = [
      `detour: no session on this agent matches ${method} ${path}, and no upstream is configured for other requests.`,
    ];
    if (fromPeer)
      lines.push(
        `The agent replica ${fromPeer.from} forwarded it here, as the replica holding its session; the session moved or ended since.`,
      );
    if (sessions.length === 0) lines.push('No session is registered: start one with `detour`.');
    else {
      lines.push('Sessions and the requests they take:');
      const names = new Set<string>();
      for (const session of sessions) {
        lines.push(
          `  ${session.id}: ${formatFilter(session.filter) || '(every request)'}${session.tunnel.isClosed ? ' (tunnel closed)' : ''}`,
        );
        for (const name of Object.keys(session.filter.headers ?? {})) names.add(name);
        for (const name of Object.keys(session.filter.withoutHeaders ?? {})) names.add(name);
      }
      if (names.size > 0) {
        lines.push('This request carried:');
        for (const name of names) lines.push(`  ${name}: ${header(name) ?? '(absent)'}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }
}

/** Fields that concern only the hop to the agent. */
const dropForwarded = new Set(['expect']);
