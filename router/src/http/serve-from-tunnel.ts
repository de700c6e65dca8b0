/**
 * CLI side of inbound traffic: an `http` tunnel stream the agent opened becomes a request to the
 * developer's local app on 127.0.0.1:<port>, and the app's response (head, streamed body,
 * trailers) goes back through the same stream. Upgrades (WebSocket, ...) become raw bytes both
 * ways once the app answered 101.
 */
import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpStreamOpen } from '../tunnel/protocol.ts';
import { TunnelCode } from '../tunnel/protocol.ts';
import type { TunnelConnection } from '../tunnel/tunnel-connection.ts';
import type { TunnelStream } from '../tunnel/tunnel-stream.ts';
import { H2cSessionPool } from './h2c-session-pool.ts';
import { flattenPairs, headerPairsFromRaw, headerValue } from './header-pairs.ts';
import { errorCode, errorMessage, LocalAppUnreachableError } from './http-errors.ts';
import { http1Agent } from './http1-relay.ts';
import { TunnelResponseWriter } from './response-writer.ts';
import { requestUpstream, type UpstreamTarget } from './upstream-request.ts';

export interface LocalAppForwarderOptions {
  /** Where the local app listens. Default 127.0.0.1. */
  host?: string;
  /** The local port for a session's target port (`--port 8080:3000`). Default: the same port. */
  localPort?: (targetPort: number, session: string) => number;
  /** A request the local app did not answer (the caller got a 502 or a cut response): the session tells its user. */
  onFailure?: (failure: LocalAppFailure) => void;
}

export interface LocalAppFailure {
  session: string;
  method: string;
  path: string;
  /** What the caller was told, with the fix. */
  text: string;
  code: string;
}

/**
 * Serves `http` tunnel streams from the local app. One instance per CLI: it holds the keep-alive
 * agent and the h2c sessions, shared by every session and stream.
 */
export class LocalAppForwarder {
  private readonly host: string;
  private readonly localPort: (targetPort: number, session: string) => number;
  private readonly onFailure: ((failure: LocalAppFailure) => void) | undefined;
  private readonly agent = http1Agent(256);
  private readonly h2 = new H2cSessionPool();
  private readonly targets = new Map<number, UpstreamTarget>();

  constructor(options: LocalAppForwarderOptions = {}) {
    this.host = options.host ?? '127.0.0.1';
    this.localPort = options.localPort ?? ((port) => port);
    this.onFailure = options.onFailure;
  }

  /** Serves every `http` stream the tunnel's peer opens (other kinds are left to other listeners). */
  attach(tunnel: TunnelConnection): void {
    tunnel.on('stream', (stream) => {
      if (stream.open.kind === 'http') this.serve(stream);
    });
  }

  /** Serves one `http` stream: request to the local app, response back through the stream. */
  serve(stream: TunnelStream): void {
    const open = stream.open;
    if (open.kind !== 'http') {
      stream.reset(TunnelCode.refused, `the local app forwarder serves http streams, not ${open.kind}`);
      return;
    }
    const port = this.localPort(open.targetPort, open.session);
    if (open.upgrade) {
      this.serveUpgrade(stream, open, port);
      return;
    }
    const writer = new TunnelResponseWriter(stream);
    const exchange = requestUpstream(this.target(port), open, stream, writer, (error, headSent) =>
      this.failure(open, port, error, headSent),
    );
    // The agent reset the stream (its client went away, or the tunnel closed): stop the local request.
    stream.on('error', () => exchange.abort());
  }

  /** Closes keep-alive sockets and h2c sessions. */
  close(): void {
    void this.agent.destroy();
    this.h2.close();
  }

  private target(port: number): UpstreamTarget {
    let target = this.targets.get(port);
    if (!target) {
      target = { host: this.host, port, agent: this.agent, h2: this.h2 };
      this.targets.set(port, target);
    }
    return target;
  }

  private failure(open: HttpStreamOpen, port: number, error: Error, headSent: boolean) {
    const unreachable = headSent
      ? undefined
      : new LocalAppUnreachableError(this.host, port, open.targetPort, error as { code?: string });
    const failure = unreachable
      ? { status: 502, text: unreachable.message, code: unreachable.code }
      : {
          status: 502,
          text: `the local app on port ${port} failed mid-response: ${errorMessage(error)}`,
          code: errorCode(error),
        };
    this.onFailure?.({
      session: open.session,
      method: open.method,
      path: open.path,
      text: failure.text,
      code: failure.code,
    });
    return failure;
  }

  private serveUpgrade(stream: TunnelStream, open: HttpStreamOpen, port: number): void {
    const headers = flattenPairs(open.headers);
    if (headerValue(open.headers, 'host') === undefined)
      headers.push('host', open.authority || `${this.host}:${port}`);
    const req = http.request({
      host: this.host,
      port,
      method: open.method,
      path: open.path,
      headers,
      agent: false,
    });
    let answered = false;
    const fail = (error: Error) => {
      if (stream.destroyed) return;
      const { text, code } = this.failure(open, port, error, answered);
      stream.reset(code, text);
    };
    req.on('error', fail);
    stream.on('error', () => req.destroy());
    req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      answered = true;
      stream.writeHeaders({
        status: res.statusCode ?? 101,
        headers: headerPairsFromRaw(res.rawHeaders, { keepUpgrade: true }),
      });
      if (head.length > 0) stream.write(head);
      // From here on the stream carries the upgraded protocol's bytes, both ways.
      socket.on('error', (error) => {
        if (!stream.destroyed)
          stream.reset(errorCode(error), `the local app's upgraded connection failed: ${error.message}`);
      });
      stream.on('error', () => socket.destroy());
      socket.on('close', () => {
        if (stream.destroyed) return;
        // Closed without ending (destroyed): the client must learn it. Ended: drain what the agent
        // still sends, so the stream sees its end and is released.
        if (!stream.writableEnded) stream.reset('ECONNRESET', 'the local app closed the upgraded connection');
        else stream.resume();
      });
      socket.pipe(stream);
      stream.pipe(socket);
    });
    req.on('response', (res: IncomingMessage) => {
      // The app declined the upgrade: relay an ordinary response.
      answered = true;
      // Nothing switches protocols: whatever the client sends now has nowhere to go.
      stream.resume();
      const writer = new TunnelResponseWriter(stream);
      writer.writeHead(res.statusCode ?? 502, headerPairsFromRaw(res.rawHeaders));
      res.pipe(stream, { end: false });
      res.on('end', () =>
        writer.end(res.rawTrailers.length > 0 ? headerPairsFromRaw(res.rawTrailers) : undefined),
      );
      res.on('error', fail);
    });
    // Bytes the client sent before the 101 wait in the stream (flow-controlled) until the upgrade.
    req.end();
  }
}
