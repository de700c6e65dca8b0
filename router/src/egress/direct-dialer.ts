import { lookup as dnsLookup } from 'node:dns/promises';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { EgressDialer, ResolvedAddress } from './dialer.ts';

/**
 * Dials from this machine with node:net and resolves with the system resolver. Serves the names the
 * egress policy keeps local, and tests. Sockets allow half-open so a relay can honour half-close,
 * and send without Nagle's algorithm (a relay's second small write would wait for the peer's
 * delayed ACK, ~40 ms).
 */
export class DirectDialer implements EgressDialer {
  readonly #timeoutMs: number;

  constructor(options: { timeoutMs?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  connect(host: string, port: number, signal?: AbortSignal): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host,
        port,
        allowHalfOpen: true,
        noDelay: true,
        timeout: this.#timeoutMs,
      });
      const fail = (err: Error) => {
        cleanup();
        socket.destroy();
        reject(err);
      };
      const onTimeout = () =>
        fail(Object.assign(new Error(`connect ETIMEDOUT ${host}:${port}`), { code: 'ETIMEDOUT' }));
      const onAbort = () => fail(Object.assign(new Error('connect aborted'), { code: 'ABORT_ERR' }));
      const onConnect = () => {
        cleanup();
        socket.setTimeout(0);
        resolve(socket);
      };
      const cleanup = () => {
        socket.off('error', fail).off('timeout', onTimeout).off('connect', onConnect);
        signal?.removeEventListener('abort', onAbort);
      };
      socket.once('error', fail).once('timeout', onTimeout).once('connect', onConnect);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async lookup(name: string, family: 0 | 4 | 6): Promise<ResolvedAddress[]> {
    const found = await dnsLookup(name, { all: true, family });
    return found.map(({ address, family }) => ({ address, family: family === 6 ? 6 : 4 }));
  }
}
