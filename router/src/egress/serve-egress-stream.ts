import { pipeline } from 'node:stream/promises';
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
    stream.once('close', () => abort.abort());
    const upstream = await dialer.connect(open.host, open.port, abort.signal);
    const remote = upstream as { remoteAddress?: string; remotePort?: number };
    stream.writeHeaders({
      connected: true,
      remoteAddress: `${remote.remoteAddress ?? open.host}:${remote.remotePort ?? open.port}`,
    });
    await Promise.all([pipeline(stream, upstream), pipeline(upstream, stream)]).catch((error: unknown) => {
      upstream.destroy();
      stream.reset(codeOf(error), (error as Error).message);
    });
  } catch (error) {
    stream.reset(codeOf(error), (error as Error).message);
  }
}
