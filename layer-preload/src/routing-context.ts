import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';

type Headers = Record<string, string>;
type Emit = (this: unknown, event: string | symbol, ...args: unknown[]) => boolean;

/**
 * The routing headers of the inbound request being handled, kept in AsyncLocalStorage so that
 * outbound calls made while handling it can carry them, for apps that do not propagate headers.
 */
export class RoutingContext {
  readonly #storage = new AsyncLocalStorage<Headers>();
  readonly #names: readonly string[];
  readonly #defaults: Readonly<Headers>;

  constructor(names: readonly string[], defaults: Readonly<Headers>) {
    this.#names = names;
    this.#defaults = defaults;
  }

  /** The headers an outbound call gets unless it set them itself: the request's, else the session's. */
  outboundHeaders(): Headers {
    return { ...this.#defaults, ...this.#storage.getStore() };
  }

  /** Runs an inbound request's handlers with its routing headers as the context. */
  run<T>(incoming: Record<string, unknown> | undefined, fn: () => T): T {
    const captured: Headers = {};
    for (const name of this.#names) {
      const value = incoming?.[name];
      if (typeof value === 'string') captured[name] = value;
      else if (Array.isArray(value)) captured[name] = value.join(', ');
    }
    return this.#storage.run(captured, fn);
  }

  /**
   * Captures from every HTTP/1 server (http and https) and HTTP/2 server (including grpc-js's) the
   * app creates: their request events are emitted inside the request's context.
   */
  captureInboundRequests(): void {
    const wrap = (target: { emit: Emit }, events: Set<string>, headersOf: (args: unknown[]) => unknown) => {
      const original = target.emit;
      const context = this;
      target.emit = function emit(this: unknown, event, ...args) {
        if (typeof event !== 'string' || !events.has(event)) return original.call(this, event, ...args);
        return context.run(headersOf(args) as Record<string, unknown>, () =>
          original.call(this, event, ...args),
        );
      };
    };
    const http1 = new Set(['request', 'checkContinue', 'checkExpectation', 'upgrade', 'connect']);
    const requestHeaders = (args: unknown[]) => (args[0] as http.IncomingMessage | undefined)?.headers;
    wrap(http.Server.prototype as unknown as { emit: Emit }, http1, requestHeaders);
    wrap(https.Server.prototype as unknown as { emit: Emit }, http1, requestHeaders);
    // http2 has no exported server classes: wrap each server as it is created. 'stream' carries the
    // headers, and the compatibility 'request' event is emitted from inside its handler.
    for (const factory of ['createServer', 'createSecureServer'] as const) {
      const create = http2[factory] as (...args: unknown[]) => http2.Http2Server;
      (http2 as Record<string, unknown>)[factory] = (...args: unknown[]) => {
        const server = create(...args);
        wrap(server as unknown as { emit: Emit }, new Set(['stream']), (a) => a[1]);
        return server;
      };
    }
  }
}
