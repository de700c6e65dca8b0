import type { Duplex } from 'node:stream';
import { DetourError } from '../errors.ts';
import { DnsAnswer, TunnelCode } from '../tunnel/protocol.ts';
import type { TunnelConnection } from '../tunnel/tunnel-connection.ts';
import type { TunnelStream } from '../tunnel/tunnel-stream.ts';
import type { EgressDialer, ResolvedAddress } from './dialer.ts';

/**
 * Dials and resolves from the agent, inside the cluster: each connect or lookup is one tunnel
 * stream. `currentTunnel` is read per call so a reconnected tunnel is picked up without a restart.
 */
export class TunnelDialer implements EgressDialer {
  readonly #currentTunnel: () => TunnelConnection | undefined;

  constructor(currentTunnel: () => TunnelConnection | undefined) {
    this.#currentTunnel = currentTunnel;
  }

  async connect(host: string, port: number, signal?: AbortSignal): Promise<Duplex> {
    const stream = this.#open({ kind: 'connect', host, port });
    await firstHeaders(stream, signal);
    return stream;
  }

  async lookup(name: string, family: 0 | 4 | 6): Promise<ResolvedAddress[]> {
    const stream = this.#open({ kind: 'dns', name, family });
    const answer = DnsAnswer.parse(await firstHeaders(stream));
    stream.resume();
    return answer.addresses;
  }

  #open(open: Parameters<TunnelConnection['openStream']>[0]): TunnelStream {
    const tunnel = this.#currentTunnel();
    if (!tunnel || tunnel.isClosed) {
      throw new DetourError(
        'DETOUR_TUNNEL_DOWN',
        'detour: the tunnel to the agent is down, so cluster names cannot be reached; detour reconnects by itself — check the `detour` session output',
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
