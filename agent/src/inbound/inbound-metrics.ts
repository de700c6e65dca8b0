import type { ForwardOutcome } from '@detour/router/http/forward-to-tunnel';
import type { TunnelConnection } from '@detour/router/tunnel/index';
import type { SessionRegistry } from '../session-registry.ts';
import type { CounterChild, MetricsRegistry } from './metrics.ts';

/** `to_peer`: sent to the agent replica that holds the session's tunnel. */
export type InboundOutcome = ForwardOutcome | 'passthrough' | 'no_session' | 'to_peer';
export type InboundErrorKind = 'tunnel' | 'upstream' | 'client' | 'sniff' | 'peer';

/**
 * The inbound listener's metrics, with every series resolved up front so the hot path only
 * increments a number.
 */
export class InboundMetrics {
  readonly requests: Record<InboundOutcome, CounterChild>;
  readonly errors: Record<InboundErrorKind, CounterChild>;
  readonly connections: { http1: CounterChild; h2c: CounterChild };
  /** Bytes of connections already closed; open ones are added at scrape time. */
  closedBytesReceived = 0;
  closedBytesSent = 0;

  constructor(
    metrics: MetricsRegistry,
    registry: SessionRegistry,
    openSockets: () => Iterable<{ bytesRead: number; bytesWritten: number }>,
  ) {
    const requests = metrics.counter('detour_inbound_requests_total', 'Inbound requests by outcome.', [
      'outcome',
    ]);
    const outcome = (name: InboundOutcome) => requests.labels({ outcome: name });
    this.requests = {
      forwarded: outcome('forwarded'),
      mirrored: outcome('mirrored'),
      client_aborted: outcome('client_aborted'),
      tunnel_failed: outcome('tunnel_failed'),
      passthrough: outcome('passthrough'),
      no_session: outcome('no_session'),
      to_peer: outcome('to_peer'),
    };
    const errors = metrics.counter('detour_inbound_errors_total', 'Inbound errors by kind.', ['kind']);
    const kind = (name: InboundErrorKind) => errors.labels({ kind: name });
    this.errors = {
      tunnel: kind('tunnel'),
      upstream: kind('upstream'),
      client: kind('client'),
      sniff: kind('sniff'),
      peer: kind('peer'),
    };
    const connections = metrics.counter(
      'detour_inbound_connections_total',
      'Inbound connections by protocol.',
      ['protocol'],
    );
    this.connections = {
      http1: connections.labels({ protocol: 'http1' }),
      h2c: connections.labels({ protocol: 'h2c' }),
    };
    metrics.value('detour_inbound_open_connections', 'Inbound connections open now.', () =>
      count(openSockets()),
    );
    metrics.collected(
      'detour_inbound_bytes_total',
      'Bytes on inbound connections.',
      'counter',
      ['direction'],
      () => {
        let received = this.closedBytesReceived;
        let sent = this.closedBytesSent;
        for (const socket of openSockets()) {
          received += socket.bytesRead;
          sent += socket.bytesWritten;
        }
        return [
          [{ direction: 'received' }, received],
          [{ direction: 'sent' }, sent],
        ];
      },
    );
    metrics.collected('detour_sessions', 'Sessions registered on this agent.', 'gauge', ['mode'], () => {
      const byMode = { steal: 0, mirror: 0, 'egress-only': 0 };
      for (const session of registry.list()) byMode[session.mode] += 1;
      return Object.entries(byMode).map(([mode, sessions]) => [{ mode }, sessions]);
    });
    metrics.value('detour_tunnel_open_streams', 'Streams open on the tunnels of registered sessions.', () => {
      let open = 0;
      for (const tunnel of tunnels(registry)) open += tunnel.openStreams;
      return open;
    });
  }
}

function count(items: Iterable<unknown>): number {
  let n = 0;
  for (const _ of items) n += 1;
  return n;
}

function tunnels(registry: SessionRegistry): Set<TunnelConnection> {
  return new Set(registry.list().map((session) => session.tunnel));
}
