import type { Duplex } from 'node:stream';
import { TunnelCode } from '../tunnel/protocol.ts';
import type { TunnelStream } from '../tunnel/tunnel-stream.ts';
import type { EgressDialer } from './dialer.ts';

function codeOf(error: unknown): string {
  return (error as { code?: string }).code ?? TunnelCode.refused;
}

/**
 * Agent side of egress: dials or resolves what a `connect` / `dns` stream asks for with `dialer`
 * (the pod's own network and resolver) and relays bytes until either side ends. Failures reach
 * the CLI as a reset carrying the errno code, so the local app sees ECONNREFUSED, ENOTFOUND, ...
 */
export async function serveEgressStream(stream: TunnelStream, dialer: EgressDialer): Promise<void> {
  const open = stream.open;
  stream.on('error', () => {});
  try {
    if (open.kind === 'dns') {
      stream.resume();
      stream.endWithHeaders({ addresses: await dialer.lookup(open.name, open.family) });
      return;
    }
    if (open.kind !== 'connect')
      throw Object.assign(new Error(`not an egress stream: ${open.kind}`), { code: TunnelCode.refused });
    const abort = new AbortController();
    const abortDial = () => abort.abort();
    stream.once('close', abortDial);
    const upstream = await dialer.connect(open.host, open.port, abort.signal);
    stream.off('close', abortDial);
    const remote = upstream as { remoteAddress?: string; remotePort?: number };
    stream.writeHeaders({
      connected: true,
      remoteAddress: `${remote.remoteAddress ?? open.host}:${remote.remotePort ?? open.port}`,
    });
    relay(stream, upstream);
  } catch (error) {
    stream.reset(codeOf(error), (error as Error).message);
  }
}

/**
 * Relays both ways with backpressure; each side's end ends the other's writable side (half-close).
 * An upstream failure resets the stream with its errno code; a stream that closes before both of its
 * directions ended (a reset, the tunnel gone) takes the upstream with it, and the other way round.
 * Plain 'data'/'drain' handlers rather than `stream.pipeline` or `pipe`: the agent holds every egress
 * connection open, and pipeline's bookkeeping (ten `finished` watchers, promises, abort signals)
 * held ~15 KiB per connection, pipe's nine listeners a side ~2.5 KiB more than these (bench case 4).
 */
function relay(stream: TunnelStream, upstream: Duplex): void {
  forward(stream, upstream);
  forward(upstream, stream);
  upstream.on('error', (error: Error) => stream.destroy(error));
  upstream.once('close', () => {
    if (!upstream.readableEnded) stream.destroy();
  });
  stream.once('close', () => {
    if (!stream.readableEnded || !stream.writableFinished) upstream.destroy();
  });
}

/** One direction of the relay: `from`'s bytes to `to`, paused while `to` is full; `from`'s end ends `to`. */
function forward(from: Duplex, to: Duplex): void {
  const resume = () => from.resume();
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', resume);
    }
  });
  from.once('end', () => to.end());
}
