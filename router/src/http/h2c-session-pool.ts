import http2, { type ClientHttp2Session } from 'node:http2';

/** How long a server that failed the HTTP/2 preface is assumed to speak HTTP/1.1 only. */
const http1OnlyForMs = 30_000;
/** A server that accepts the connection but sends no SETTINGS within this time is not an h2c server. */
const settingsTimeoutMs = 3_000;

/**
 * One cached HTTP/2 prior-knowledge (h2c) client session per host:port, so gRPC and other HTTP/2
 * requests are multiplexed on one connection as the caller's own client would. A server that
 * answers the preface with anything but SETTINGS (a plain HTTP/1.1 server) is remembered as
 * HTTP/1.1-only for a while, and callers send it HTTP/1.1 instead.
 */
export class H2cSessionPool {
  private readonly sessions = new Map<string, ClientHttp2Session>();
  private readonly connecting = new Map<string, Promise<ClientHttp2Session | null>>();
  private readonly http1Only = new Map<string, number>();
  private closed = false;

  /**
   * Resolves a ready session, or null when the server does not speak h2c. Rejects with the
   * socket error (code ECONNREFUSED, ...) when nothing accepts the connection.
   */
  acquire(host: string, port: number): Promise<ClientHttp2Session | null> {
    const key = `${host}:${port}`;
    const session = this.sessions.get(key);
    if (session && !session.closed && !session.destroyed) return Promise.resolve(session);
    const until = this.http1Only.get(key);
    if (until !== undefined) {
      if (until > Date.now()) return Promise.resolve(null);
      this.http1Only.delete(key);
    }
    let pending = this.connecting.get(key);
    if (!pending) {
      pending = this.connect(key, host, port);
      this.connecting.set(key, pending);
    }
    return pending;
  }

  /** Closes every cached session (streams in flight finish first). */
  close(): void {
    this.closed = true;
    for (const session of this.sessions.values()) session.close();
    this.sessions.clear();
  }

  private connect(key: string, host: string, port: number): Promise<ClientHttp2Session | null> {
    return new Promise((resolve, reject) => {
      let connected = false;
      let settled = false;
      const session = http2.connect(`http://${host}:${port}`);
      const settle = (value: ClientHttp2Session | null, error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.connecting.delete(key);
        if (error) reject(error);
        else resolve(value);
      };
      const timer = setTimeout(() => {
        this.http1Only.set(key, Date.now() + http1OnlyForMs);
        session.destroy();
        settle(null);
      }, settingsTimeoutMs);
      timer.unref();
      session.once('connect', () => {
        connected = true;
      });
      session.once('remoteSettings', () => {
        if (this.closed) {
          session.close();
          settle(
            null,
            Object.assign(new Error('the HTTP/2 session pool is closed'), { code: 'ERR_HTTP2_POOL_CLOSED' }),
          );
          return;
        }
        this.sessions.set(key, session);
        // An idle cached session must not keep the process alive.
        session.unref();
        settle(session);
      });
      const forget = () => {
        if (this.sessions.get(key) === session) this.sessions.delete(key);
      };
      session.on('goaway', forget);
      session.on('close', () => {
        forget();
        if (settled) return;
        if (connected) {
          this.http1Only.set(key, Date.now() + http1OnlyForMs);
          settle(null);
        } else
          settle(null, Object.assign(new Error(`the connection to ${key} closed`), { code: 'ECONNRESET' }));
      });
      session.on('error', (error) => {
        forget();
        if (!connected) settle(null, error);
        else if (!settled) {
          // Connected, but the preface was refused: a server that speaks HTTP/1.1 only.
          this.http1Only.set(key, Date.now() + http1OnlyForMs);
          settle(null);
        }
      });
    });
  }
}
