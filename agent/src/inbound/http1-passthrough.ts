/**
 * The no-mesh pass-through for HTTP/1.1: a request no session claims goes to the upstream (the
 * shadow Service of the original pods) on an undici keep-alive pool. This is the path every
 * request of the service takes without a mesh, and the one the benchmark measures, so it stays
 * lean: one `Http1Relay` per request, headers copied once, no JSON.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Http1Relay, http1Origin, http1Pool, type ResponseHeaders } from '@detour/router/http/http1-relay';
import type { Pool } from 'undici';

/** Request fields never forwarded: connection-specific (RFC 9110 §7.6.1), and `expect`, which the
 * agent already answered (undici refuses it too). `te: trailers` is kept. */
const dropRequest = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'expect',
  'http2-settings',
]);

export interface PassthroughEvents {
  /** The upstream failed or closed before (502 sent) or during the response (connection cut). */
  upstreamFailed(error: Error): void;
}

export class Http1Passthrough {
  readonly origin: string;
  private readonly pool: Pool;
  readonly events: PassthroughEvents;

  constructor(host: string, port: number, events: PassthroughEvents) {
    this.origin = http1Origin(host, port);
    this.events = events;
    this.pool = http1Pool(this.origin);
  }

  forward(req: IncomingMessage, res: ServerResponse): void {
    const raw = req.rawHeaders;
    const headers: string[] = [];
    let hasBody = false;
    let listed: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] as string;
      if (dropRequest.has(name)) {
        if (name === 'transfer-encoding') hasBody = true;
        else if (name === 'connection') listed = value.toLowerCase();
        continue;
      }
      if (name === 'te') {
        if (value.trim().toLowerCase() === 'trailers') headers.push(name, 'trailers');
        continue;
      }
      if (name === 'content-length') hasBody = value !== '0';
      headers.push(name, value);
    }
    if (listed !== undefined) stripListed(headers, listed);
    const exchange = new PassthroughExchange(req, res, this);
    res.on('close', exchange.onClientClose);
    this.pool.dispatch(
      { method: req.method ?? 'GET', path: req.url ?? '/', headers, body: hasBody ? req : null },
      exchange,
    );
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}

/** Names a `Connection` header lists (other than its own keywords) are connection-specific too. */
function stripListed(headers: string[], listed: string): void {
  for (const option of listed.split(',')) {
    const name = option.trim();
    if (!name || name === 'close' || name === 'keep-alive' || name === 'upgrade') continue;
    for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i] === name) headers.splice(i, 2);
  }
}

class PassthroughExchange extends Http1Relay {
  private readonly req: IncomingMessage;
  protected readonly response: ServerResponse;
  private readonly owner: Http1Passthrough;

  constructor(req: IncomingMessage, res: ServerResponse, owner: Http1Passthrough) {
    super();
    this.req = req;
    this.response = res;
    this.owner = owner;
  }

  /** Arrow property: the one closure per request, so `res` can call back into the exchange. */
  readonly onClientClose = (): void => {
    if (!this.response.writableFinished) this.cancel();
  };

  protected head(status: number, headers: ResponseHeaders): void {
    this.response.writeHead(status, headers);
  }

  protected end(trailers: ResponseHeaders | undefined): void {
    if (trailers) this.response.addTrailers(trailers as Record<string, string>);
    this.response.end();
  }

  protected failed(error: Error): void {
    const res = this.response;
    if (res.destroyed) return;
    this.owner.events.upstreamFailed(error);
    this.req.resume();
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const code = (error as { code?: string }).code ?? 'UPSTREAM_ERROR';
    const text = `detour: the upstream ${this.owner.origin} failed (${code}): ${error.message}\n`;
    res.writeHead(502, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'x-detour-error': code,
    });
    res.end(text);
  }
}
