import net from 'node:net';
import type { EgressDialer } from '@detour/router/egress/dialer';
import { serveEgressStream } from '@detour/router/egress/serve-egress-stream';
import { TunnelCode, TunnelConnection } from '@detour/router/tunnel/index';
import { serveSessionControl, summarize } from './agent-session-control.ts';
import type { Log } from './log.ts';
import { agentRelease, cliVersionFix } from './release.ts';
import type { RouteProbes } from './route-probe.ts';
import type { AgentSession, SessionRegistry } from './session-registry.ts';

export interface TunnelListenerOptions {
  host: string;
  port: number;
  tokens: readonly string[];
  /** Admits tokens that are not static ones (session Leases). */
  authenticate?: (token: string) => Promise<boolean>;
  agentName: string;
  /** The agent's namespace in a cluster: a refused CLI is told the command for it. */
  namespace?: string;
  registry: SessionRegistry;
  dialer: EgressDialer;
  log: Log;
  heartbeatMs?: number;
  /** Sessions whose tunnel closed (the janitor gives them a grace period to come back). */
  onSessionsDropped?: (sessions: AgentSession[]) => void;
  /** Answers `route.probe` control requests. */
  probes?: RouteProbes;
  /** A session registered here (the replica records that it holds it). */
  onRegistered?: (session: AgentSession) => Promise<void>;
}

/**
 * Accepts CLI tunnels. In a cluster it binds 127.0.0.1 so only `kubectl port-forward` reaches it;
 * each connection must present a token. A misbehaving connection is closed alone: every other
 * session keeps being served.
 */
export async function startTunnelListener(
  options: TunnelListenerOptions,
): Promise<{ server: net.Server; tunnels: Set<TunnelConnection> }> {
  const { registry, log } = options;
  const tunnels = new Set<TunnelConnection>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', () => {});
    TunnelConnection.accept(socket, {
      tokens: options.tokens,
      ...(options.authenticate ? { authenticate: options.authenticate } : {}),
      agent: options.agentName,
      heartbeatMs: options.heartbeatMs,
      release: agentRelease,
      versionFix: cliVersionFix(options.namespace),
    })
      .then((tunnel) => {
        tunnels.add(tunnel);
        log.info('tunnel.open', { peer, client: tunnel.peerName });
        serveSessionControl(
          registry,
          tunnel,
          (dropped) => {
            log.info('tunnel.closed', {
              peer,
              client: tunnel.peerName,
              reason: tunnel.closeReason?.message,
              droppedSessions: dropped.map(summarize),
            });
            options.onSessionsDropped?.(dropped);
          },
          options.probes,
          options.onRegistered,
        );
        tunnel.on('stream', (stream) => {
          if (stream.open.kind === 'http')
            stream.reset(TunnelCode.refused, 'the agent does not accept http streams from a CLI');
          else void serveEgressStream(stream, options.dialer);
        });
        tunnel.on('close', () => tunnels.delete(tunnel));
      })
      .catch((error: Error & { code?: string }) =>
        log.warn('tunnel.refused', { peer, code: error.code, reason: error.message }),
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return { server, tunnels };
}
