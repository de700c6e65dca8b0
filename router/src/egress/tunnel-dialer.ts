import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DetourError } from '../errors.ts';
import { DnsAnswer, TunnelCode } from '../tunnel/protocol.ts';
import type { TunnelConnection } from '../tunnel/tunnel-connection.ts';
import type { TunnelStream } from '../tunnel/tunnel-stream.ts';
import type { EgressDialer, ResolvedAddress } from './dialer.ts';

/** How often a dial waiting for the tunnel looks again. */
const tunnelPollMs = 50;

export interface TunnelDialerOptions {
  /**
   * How long a connect or lookup made while no tunnel is up waits for one (a reconnect after a
   * broken port-forward or a laptop's sleep takes a second or two) before it fails. Default 0.
   */
  reconnectWaitMs?: number;
}

/**
 * Dials and resolves from the agent, inside the cluster: each connect or lookup is one tunnel
 * stream. `currentTunnel` is read per call so a reconnected tunnel is picked up without a restart.
 */
export class TunnelDialer implements EgressDialer {
  readonly #currentTunnel: () => TunnelConnection | undefined;
  readonly #reconnectWaitMs: number;

  constructor(currentTunnel: () => TunnelConnection | undefined, options: TunnelDialerOptions = {}) {
    this.#currentTunnel = currentTunnel;
    this.#reconnectWaitMs = options.reconnectWaitMs ?? 0;
  }

  async connect(host: string, port: number, signal?: AbortSignal): Promise<Duplex> {
    const stream = await this.#open({ kind: 'connect', host, port }, signal);
    await firstHeaders(stream, signal);
    return stream;
  }

  async lookup(name: string, family: 0 | 4 | 6): Promise<ResolvedAddress[]> {
    const stream = await this.#open({ kind: 'dns', name, family });
    const answer = DnsAnswer.parse(await firstHeaders(stream));
    stream.resume();
    return answer.addresses;
  }

  async #tunnel(signal: AbortSignal | undefined): Promise<TunnelConnection | undefined> {
    const until = Date.now() + this.#reconnectWaitMs;
    for (;;) {
      const tunnel = this.#currentTunnel();
      if (tunnel && !tunnel.isClosed) return tunnel;
      if (Date.now() >= until || signal?.aborted) return undefined;
      await sleep(tunnelPollMs, undefined, signal ? { signal } : {}).catch(() => {});
    }
  }

  async #open(
    open: Parameters<TunnelConnection['openStream']>[0],
    signal?: AbortSignal,
  ): Promise<TunnelStream> {
    const tunnel = await this.#tunnel(signal);
    if (signal?.aborted) throw Object.assign(new Error('connect aborted'), { code: 'ABORT_ERR' });
    if (!tunnel) {
      const waited = this.#reconnectWaitMs > 0 ? ` (waited ${this.#reconnectWaitMs / 1000} s for it)` : '';
      throw new DetourError(
        'DETOUR_TUNNEL_DOWN',
        `detour: the tunnel to the agent is down${waited}, so cluster names cannot be reached; detour reconnects by itself — check the \`detour\` session output`,
      );
    }
    const stream = tunnel.openStream(open);
    if (open.kind === 'dns') stream.end();
    return stream;
  }
}

/** Resolves with the stream's first header block, or rejects with the reset the agent sent instead. */
function firstHeaders(stream: TunnelStream, signal?: AbortSignal): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const onHeaders = (value: unknown) => {
      cleanup();
      resolve(value);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onAbort = () => {
      stream.reset(TunnelCode.cancel, 'the caller gave up');
      onError(Object.assign(new Error('connect aborted'), { code: 'ABORT_ERR' }));
    };
    const cleanup = () => {
      stream.off('headers', onHeaders).off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    stream.once('headers', onHeaders).once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
