/**
 * HTTP/1.1 to a server on undici keep-alive pools, the response relayed by one lean dispatch
 * handler per request (methods on the prototype, no header conversion on the way in). The agent's
 * no-mesh pass-through and every HTTP/1.1 request `UpstreamExchange` sends (the CLI to the local
 * app, one agent replica to another) use it: node:http's client cost the CLI ~1.6× the CPU per
 * request (tests/bench/README.md, case 2).
 */
import type { Writable } from 'node:stream';
import { Agent, type Dispatcher, Pool } from 'undici';

/** Response headers and trailers as undici parses them: lower-case names, repeats as arrays. */
export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** No deadlines (streams, SSE and long polls last as long as they last); one request per socket. */
const options = { pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 };

/** `http://host:port` (IPv6 hosts bracketed), as undici names an origin. */
export function http1Origin(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Keep-alive connections to one origin. */
export function http1Pool(origin: string): Pool {
  return new Pool(origin, options);
}

/** Keep-alive connections to any origin (`dispatch({ origin, ... })`), `connections` per origin. */
export function http1Agent(connections: number): Agent {
  return new Agent({ ...options, connections });
}

/** Response fields never relayed: connection-specific (RFC 9110 §7.6.1). */
const dropResponse = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

const cancelled = Object.assign(new Error('the client went away'), { code: 'ECONNRESET' });

/**
 * One request's response, relayed: the head (final status only, without connection-specific
 * fields), the body with backpressure on `response`, then the trailers; or the failure.
 */
export abstract class Http1Relay implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private stopped = false;

  /** Where the response body goes; a full buffer pauses the upstream until it drains. */
  protected abstract readonly response: Writable;
  protected abstract head(status: number, headers: ResponseHeaders): void;
  /** The response ended; `trailers` when the upstream sent any. */
  protected abstract end(trailers: ResponseHeaders | undefined): void;
  /** The upstream failed before the head (nothing sent yet) or mid-response. */
  protected abstract failed(error: Error): void;

  /** The client went away: stop the request, now or as soon as it starts; no `failed` follows. */
  cancel(): void {
    this.stopped = true;
    this.controller?.abort(cancelled);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.stopped) controller.abort(cancelled);
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    status: number,
    headers: ResponseHeaders,
  ): void {
    if (status < 200) return;
    const listed = headers.connection;
    if (typeof listed === 'string')
      for (const option of listed.split(',')) {
        const name = option.trim().toLowerCase();
        if (name) delete headers[name];
      }
    for (const name of dropResponse) if (headers[name] !== undefined) delete headers[name];
    this.head(status, headers);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.response.write(chunk)) {
      controller.pause();
      this.response.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: ResponseHeaders): void {
    for (const _ in trailers) {
      this.end(trailers);
      return;
    }
    this.end(undefined);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (error !== cancelled) this.failed(error);
  }
}
