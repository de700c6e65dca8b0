import { AsyncLocalStorage } from 'node:async_hooks';
import net from 'node:net';

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
   * Captures from every server the app creates — http, https, http2 (so grpc-js servers too) — all of
   * which emit through `net.Server.prototype.emit`: their request events run inside the request's
   * context. Patching that one method avoids loading https/tls/http2 at start-up.
   */
  captureInboundRequests(): void {
    const original = net.Server.prototype.emit as Emit;
    const context = this;
    net.Server.prototype.emit = function emit(this: unknown, event: string | symbol, ...args: unknown[]) {
      const headersOf = typeof event === 'string' ? requestEvents[event] : undefined;
      if (!headersOf) return original.call(this, event, ...args);
      return context.run(headersOf(args), () => original.call(this, event, ...args));
    } as typeof net.Server.prototype.emit;
  }
}

const fromMessage = (args: unknown[]) =>
  (args[0] as { headers?: Record<string, unknown> } | undefined)?.headers;
/** Request events of http/https servers (and http2's compatibility API), and http2's 'stream'. */
const requestEvents: Record<string, ((args: unknown[]) => Record<string, unknown> | undefined) | undefined> =
  {
    __proto__: null as never,
    request: fromMessage,
    checkContinue: fromMessage,
    checkExpectation: fromMessage,
    upgrade: fromMessage,
    connect: fromMessage,
    stream: (args) => args[1] as Record<string, unknown> | undefined,
  };
