/**
 * Sends one request to an HTTP server (the developer's local app on the CLI side, the agent's
 * pass-through upstream) and relays the response into a `ResponseWriter`, streaming both ways.
 * A request that arrived over HTTP/2 goes out over h2c (gRPC needs it), unless the server only
 * speaks HTTP/1.1; every other request goes out over HTTP/1.1 on undici keep-alive pools.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { type ClientHttp2Session, type ClientHttp2Stream, constants as h2 } from 'node:http2';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import type { Agent } from 'undici';
import type { HeaderPairs } from '../tunnel/protocol.ts';
import type { H2cSessionPool } from './h2c-session-pool.ts';
import { flattenPairs, headerValue, isGrpc, pairsFromHttp2, pairsToHttp2 } from './header-pairs.ts';
import { Http1Relay, http1Origin, type ResponseHeaders } from './http1-relay.ts';
import type { ResponseWriter } from './response-writer.ts';

export interface UpstreamRequest {
  method: string;
  path: string;
  authority: string;
  /** Without hop-by-hop fields (see `headerPairsFromRaw`). */
  headers: HeaderPairs;
  httpVersion: '1.1' | '2';
}

export interface UpstreamTarget {
  host: string;
  port: number;
  /** Keep-alive pools for HTTP/1.1 (`http1Agent`). */
  agent: Agent;
  /** h2c sessions for requests that arrived over HTTP/2; without it everything goes over HTTP/1.1. */
  h2?: H2cSessionPool;
}

/**
 * Decides what the writer says when the exchange fails: `headSent` false means nothing reached the
 * client yet (the upstream is down, or closed before answering).
 */
export type UpstreamFailure = (
  error: Error,
  headSent: boolean,
) => { status: number; text: string; code: string };

/**
 * One request in flight; `abort` cancels it when the client (or the tunnel) goes away. Over
 * HTTP/1.1 it is its own undici handler (`Http1Relay`).
 */
export class UpstreamExchange extends Http1Relay {
  private readonly target: UpstreamTarget;
  private readonly request: UpstreamRequest;
  private readonly body: Readable;
  private readonly writer: ResponseWriter;
  private readonly describe: UpstreamFailure;
  protected readonly response: Writable;
  private h2: ClientHttp2Stream | undefined;
  private source: Readable | undefined;
  private trailers: HeaderPairs | undefined;
  private done = false;

  constructor(
    target: UpstreamTarget,
    request: UpstreamRequest,
    body: Readable,
    writer: ResponseWriter,
    describe: UpstreamFailure,
  ) {
    super();
    this.response = writer.body;
    this.target = target;
    this.request = request;
    this.body = body;
    this.writer = writer;
    this.describe = describe;
  }

  start(): this {
    if (this.request.httpVersion === '2' && this.target.h2) {
      this.target.h2.acquire(this.target.host, this.target.port).then(
        (session) => {
          if (this.done) return;
          if (session) this.viaHttp2(session);
          else this.viaHttp1();
        },
        (error: Error) => this.fail(error),
      );
    } else this.viaHttp1();
    return this;
  }

  /** The client went away: cancel the upstream request. */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.body.unpipe();
    this.source?.unpipe();
    this.cancel(); // the HTTP/1.1 request, if one was dispatched (nothing otherwise)
    if (this.h2 && !this.h2.closed) this.h2.close(h2.NGHTTP2_CANCEL);
  }

  private viaHttp1(): void {
    const { request, target } = this;
    const headers = flattenPairs(request.headers);
    if (headerValue(request.headers, 'host') === undefined)
      headers.push('host', request.authority || `${target.host}:${target.port}`);
    // undici destroys a stream body once sent: the request's own stream may be a duplex that still
    // carries the response (a tunnel stream, an HTTP/2 stream), so the body goes through its own.
    const body = new PassThrough();
    this.body.pipe(body);
    target.agent.dispatch(
      {
        origin: http1Origin(target.host, target.port),
        method: request.method,
        path: request.path,
        headers,
        body,
      },
      this,
    );
  }

  protected head(status: number, headers: ResponseHeaders): void {
    if (this.done) return;
    try {
      this.writer.writeHead(status, pairsFromHttp2(headers));
    } catch (error) {
      this.fail(error as Error);
    }
  }

  protected end(trailers: ResponseHeaders | undefined): void {
    this.drainBody();
    if (this.done) return;
    this.done = true;
    this.writer.end(trailers && pairsFromHttp2(trailers));
  }

  protected failed(error: Error): void {
    this.drainBody();
    this.fail(error);
  }

  private viaHttp2(session: ClientHttp2Session): void {
    const { request } = this;
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(
        pairsToHttp2(request.headers, {
          ':method': request.method,
          ':path': request.path,
          ':authority': request.authority || `${this.target.host}:${this.target.port}`,
          ':scheme': 'http',
        }),
      );
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    this.h2 = stream;
    stream.on('response', (headers, flags) => this.onHttp2Response(stream, headers, flags));
    stream.on('trailers', (trailers) => {
      this.trailers = pairsFromHttp2(trailers);
    });
    stream.on('end', () => {
      if (this.done) return;
      this.done = true;
      this.writer.end(this.trailers);
    });
    stream.on('error', (error) => this.fail(error));
    stream.on('close', () => {
      this.drainBody();
      if (!this.done)
        this.fail(
          Object.assign(new Error(`the upstream reset the HTTP/2 stream (code ${stream.rstCode})`), {
            code: 'ECONNRESET',
          }),
        );
    });
    this.body.pipe(stream);
  }

  private onHttp2Response(
    stream: ClientHttp2Stream,
    headers: IncomingHttpHeaders & { ':status'?: number },
    flags: number,
  ): void {
    if (this.done) return;
    let head = pairsFromHttp2(headers);
    if (
      flags & h2.NGHTTP2_FLAG_END_STREAM &&
      isGrpc(headerValue(head, 'content-type')) &&
      headers['grpc-status'] !== undefined
    ) {
      // gRPC "trailers only": the status is in the only header block. Relay it as a head and
      // trailers, which every gRPC client accepts and every response writer can express.
      this.trailers = head.filter(([name]) => name !== 'content-type');
      head = head.filter(([name]) => name === 'content-type');
    }
    try {
      this.writer.writeHead(headers[':status'] ?? 502, head);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    this.source = stream;
    stream.pipe(this.writer.body, { end: false });
  }

  /**
   * The upstream request is over. A server may answer before it read the whole request (413, an
   * early error) and close: the rest of the body is read and dropped, so its source sees its end.
   */
  private drainBody(): void {
    if (this.body.readableEnded || this.body.destroyed) return;
    this.body.unpipe();
    this.body.resume();
  }

  private fail(error: Error): void {
    if (this.done) return;
    this.abort();
    // Drain what the client still sends, so a keep-alive connection stays usable.
    this.body.resume();
    const { status, text, code } = this.describe(error, this.writer.headSent);
    this.writer.fail(status, text, code);
  }
}

/** Starts `UpstreamExchange` for one request. */
export function requestUpstream(
  target: UpstreamTarget,
  request: UpstreamRequest,
  body: Readable,
  writer: ResponseWriter,
  describe: UpstreamFailure,
): UpstreamExchange {
  return new UpstreamExchange(target, request, body, writer, describe).start();
}
