import type http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { proxyVariables } from '@detour/layer/proxy-variables';
import { DetourError } from '@detour/router/errors';
import type { EgressRouter } from './egress-router.ts';
import { createHttpProxyServer } from './http-proxy-session.ts';
import type { EgressProxyStats, ProxyContext } from './proxy-context.ts';
import { serveSocks5 } from './socks5-session.ts';

export type { EgressProxyStats } from './proxy-context.ts';

export interface EgressProxyOptions {
  router: EgressRouter;
  /** Loopback only: the proxy has no authentication. */
  host?: '127.0.0.1' | '::1';
  /** 0 picks an ephemeral port; `listen()` reports it. */
  port?: number;
  forwardTimeoutMs?: number;
  /** How long a new client may stay silent before it is dropped. */
  firstByteTimeoutMs?: number;
}

export class EgressProxyError extends DetourError {}

/**
 * The CLI's loopback egress proxy: one listener that speaks SOCKS5 (with remote DNS, Tor RESOLVE and
 * the layer's FORWARD) and HTTP (CONNECT and absolute-URI requests), told apart by the first byte.
 * Every connection is dialed through the dialer the router picks for its destination.
 */
export class EgressProxy {
  readonly stats: EgressProxyStats = {
    connections: 0,
    socksConnect: 0,
    socksResolve: 0,
    layerForward: 0,
    httpConnect: 0,
    httpForward: 0,
    remote: 0,
    local: 0,
    failed: 0,
  };
  readonly #options: EgressProxyOptions;
  readonly #server = net.createServer({ allowHalfOpen: true, noDelay: true });
  readonly #open = new Set<Duplex>();
  readonly #ctx: ProxyContext;
  readonly #http: http.Server;

  constructor(options: EgressProxyOptions) {
    this.#options = options;
    const open = this.#open;
    const stats = this.stats;
    this.#ctx = {
      router: options.router,
      stats,
      forwardTimeoutMs: options.forwardTimeoutMs ?? 10_000,
      track(stream) {
        open.add(stream);
        stream.once('close', () => open.delete(stream));
        return stream;
      },
      async dial(host, port) {
        const { decision, dialer } = options.router.route(host);
        try {
          const upstream = this.track(await dialer.connect(host, port));
          stats[decision]++;
          return upstream;
        } catch (err) {
          stats.failed++;
          throw err;
        }
      },
    };
    this.#http = createHttpProxyServer(this.#ctx);
    this.#server.on('connection', (socket) => this.#accept(socket));
  }

  async listen(): Promise<{ host: string; port: number }> {
    const host = this.#options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new EgressProxyError(
            'DETOUR_PROXY_LISTEN_FAILED',
            `detour could not listen on ${host}:${this.#options.port ?? 0} for its egress proxy (${err.code}); ` +
              'pick another port with --proxy-port, or 0 for any free one',
            { cause: err },
          ),
        ),
      );
      this.#server.listen(this.#options.port ?? 0, host, resolve);
    });
    return this.address;
  }

  get address(): { host: string; port: number } {
    const { address, port } = this.#server.address() as net.AddressInfo;
    return { host: address, port };
  }

  /** The env that points the layer and other runtimes' clients at this proxy. */
  env(): Record<string, string> {
    const { host, port } = this.address;
    const hostPort = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    return {
      DETOUR_PROXY: hostPort,
      ...this.#options.router.policy.toEnv(),
      ...proxyVariables(hostPort),
      NO_PROXY: 'localhost,127.0.0.1,::1',
    };
  }

  /** Client and upstream streams still open (0 once every relay has finished). */
  get openStreams(): number {
    return this.#open.size;
  }

  /** Stops listening and destroys every connection still open. */
  async close(): Promise<void> {
    const closed = new Promise((resolve) => this.#server.close(resolve));
    for (const stream of this.#open) stream.destroy();
    await closed;
  }

  #accept(socket: net.Socket): void {
    this.stats.connections++;
    this.#ctx.track(socket);
    socket.on('error', () => socket.destroy());
    // A client that connects and says nothing is dropped; once it has spoken, its protocol's
    // handler owns the socket (the HTTP server has its own timeouts, a relay is idle-tolerant).
    socket.setTimeout(this.#options.firstByteTimeoutMs ?? 30_000, () => socket.destroy());
    socket.once('readable', () => {
      socket.setTimeout(0);
      const first: Buffer | null = socket.read();
      if (first === null) return void socket.destroy();
      socket.unshift(first);
      if (first[0] === 0x05) {
        serveSocks5(socket, this.#ctx).catch(() => socket.destroy());
      } else if (first[0] === 0x04) {
        // SOCKS4 is not served: answer "request rejected" in its own format so clients say so.
        socket.end(Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0]));
      } else {
        this.#http.emit('connection', socket);
      }
    });
  }
}
