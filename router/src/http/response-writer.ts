/**
 * Where a relayed response goes: a node:http response, a node:http2 server stream, or a tunnel
 * stream. Relays write the head, pipe the body into `body` (backpressure through the usual
 * write/drain), then end with the trailers, or fail; each writer maps that onto its protocol.
 */
import type { ServerResponse } from 'node:http';
import { constants as http2, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Writable } from 'node:stream';
import type { HeaderPairs } from '../tunnel/protocol.ts';
import type { TunnelStream } from '../tunnel/tunnel-stream.ts';
import { flattenPairs, grpcMessage, pairsToHttp2 } from './header-pairs.ts';

export interface ResponseWriter {
  /** The status line and headers are out: a failure can no longer become an error response. */
  readonly headSent: boolean;
  /** Interim (1xx) heads are dropped; the final head is written once. Throws on invalid headers. */
  writeHead(status: number, headers: HeaderPairs): void;
  readonly body: Writable;
  /** Ends the response, with trailers when the upstream sent any. */
  end(trailers: HeaderPairs | undefined): void;
  /**
   * The exchange failed. Before the head: an error response (`status`, `text`). After it: the
   * response is cut (socket destroyed, HTTP/2 stream reset, gRPC status 14 UNAVAILABLE, tunnel reset).
   */
  fail(status: number, text: string, code: string): void;
}

const textHeaders = (body: string, code: string) => ({
  'content-type': 'text/plain; charset=utf-8',
  'content-length': Buffer.byteLength(body),
  'x-detour-error': code,
});

/** node:http `ServerResponse`: chunked trailers for HTTP/1.1 (sent when the body is chunked). */
export class Http1ResponseWriter implements ResponseWriter {
  readonly body: ServerResponse;

  constructor(res: ServerResponse) {
    this.body = res;
  }

  get headSent(): boolean {
    return this.body.headersSent;
  }

  writeHead(status: number, headers: HeaderPairs): void {
    if (status < 200) return;
    this.body.writeHead(status, flattenPairs(headers));
  }

  end(trailers: HeaderPairs | undefined): void {
    if (trailers && trailers.length > 0) this.body.addTrailers(trailers);
    this.body.end();
  }

  fail(status: number, text: string, code: string): void {
    const res = this.body;
    if (res.destroyed || res.writableEnded) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${text}\n`;
    res.writeHead(status, textHeaders(body, code));
    res.end(body);
  }
}

/** node:http2 server stream: the response is held open for trailers (gRPC status lives there). */
export class Http2ResponseWriter implements ResponseWriter {
  readonly body: ServerHttp2Stream;
  private readonly grpc: boolean;
  private trailers: OutgoingHttpHeaders = {};

  constructor(stream: ServerHttp2Stream, grpc: boolean) {
    this.body = stream;
    this.grpc = grpc;
    stream.on('wantTrailers', () => {
      // An empty trailer set makes node send an empty DATA frame with END_STREAM instead.
      stream.sendTrailers(this.trailers);
    });
  }

  get headSent(): boolean {
    return this.body.headersSent;
  }

  writeHead(status: number, headers: HeaderPairs): void {
    if (status < 200 || this.body.destroyed) return;
    this.body.respond(pairsToHttp2(headers, { ':status': status }), { waitForTrailers: true });
  }

  end(trailers: HeaderPairs | undefined): void {
    if (trailers) this.trailers = pairsToHttp2(trailers);
    if (!this.body.destroyed) this.body.end();
  }

  fail(status: number, text: string, code: string): void {
    const stream = this.body;
    if (stream.destroyed || stream.closed) return;
    if (this.grpc) {
      // gRPC clients read an error from grpc-status; UNAVAILABLE tells them the call may be retried.
      const status14 = { 'grpc-status': '14', 'grpc-message': grpcMessage(text) };
      if (!stream.headersSent) {
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', ...status14 },
          { endStream: true },
        );
      } else if (!stream.writableEnded) {
        this.trailers = status14;
        stream.end();
      } else stream.close(http2.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    if (stream.headersSent) {
      stream.close(http2.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const body = `${text}\n`;
    stream.respond({ ':status': status, ...textHeaders(body, code) });
    stream.end(body);
  }
}

/** A tunnel stream (CLI side): the head and trailers travel as header blocks between the bytes. */
export class TunnelResponseWriter implements ResponseWriter {
  readonly body: TunnelStream;
  headSent = false;

  constructor(stream: TunnelStream) {
    this.body = stream;
  }

  writeHead(status: number, headers: HeaderPairs): void {
    if (status < 200 || this.body.destroyed) return;
    this.headSent = true;
    this.body.writeHeaders({ status, headers });
  }

  end(trailers: HeaderPairs | undefined): void {
    if (this.body.destroyed) return;
    if (trailers && trailers.length > 0) this.body.endWithHeaders({ trailers });
    else this.body.end();
  }

  fail(_status: number, text: string, code: string): void {
    if (!this.body.destroyed) this.body.reset(code, text);
  }
}
