#!/usr/bin/env node
import type { AddressInfo } from 'node:net';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { TunnelCode, type TunnelConnection } from '@detour/router/tunnel/index';
import { loadAgentConfig } from './agent-config.ts';
import { AdminListener } from './inbound/admin-listener.ts';
import { InboundListener } from './inbound/inbound-listener.ts';
import { jsonLog } from './log.ts';
import { PeerForwarder } from './peers/peer-forwarder.ts';
import { RouteProbes } from './route-probe.ts';
import { type AgentSession, SessionRegistry } from './session-registry.ts';
import { startTunnelListener } from './tunnel-listener.ts';

/** The agent process: tunnel listener, inbound listener and admin listener around one session table. */
async function main(): Promise<void> {
  const log = jsonLog();
  const config = loadAgentConfig();
  const registry = new SessionRegistry();
  let stopping = false;
  // Loaded only when the agent talks to the apiserver: the Kubernetes client is most of its memory.
  const cluster = config.namespace
    ? await (await import('./cluster-access.ts')).connectCluster(config.namespace, config, registry, log)
    : undefined;
  const janitor = cluster?.janitor;
  const peers = cluster?.peers;
  const probes = new RouteProbes();
  /** This replica no longer holds the session: off its Lease (a failure only costs a hop). */
  const releaseHolder = (session: AgentSession) =>
    void peers
      ?.releaseHolder(session)
      .catch((error: Error) =>
        log.warn('peers.holder-release-failed', { session: session.id, reason: error.message }),
      );
  const inbound = await InboundListener.listen({
    registry,
    ...config.inbound,
    upstream: config.upstream,
    probes,
    ...(peers
      ? {
          peers: {
            directory: peers.directory,
            forwarder: new PeerForwarder(
              config.agentName,
              () => inbound.stats.errors.peer.inc(),
              config.peerHost,
            ),
          },
        }
      : {}),
  });
  const tunnel = await startTunnelListener({
    ...config.tunnel,
    tokens: config.tokens,
    ...(cluster ? { authenticate: cluster.authenticate } : {}),
    agentName: config.agentName,
    ...(config.namespace ? { namespace: config.namespace } : {}),
    registry,
    dialer: new DirectDialer(),
    log,
    heartbeatMs: config.heartbeatMs,
    probes,
    ...(peers
      ? {
          // A session whose holder could not be recorded is still served, by this replica's share of requests.
          onRegistered: (session: AgentSession) =>
            peers
              .recordHolder(session)
              .catch((error: Error) =>
                log.warn('peers.holder-record-failed', { session: session.id, reason: error.message }),
              ),
        }
      : {}),
    onSessionsDropped: (sessions) => {
      for (const session of sessions) {
        // Off the Lease first, so the janitor (after its grace) sees whether another replica holds it.
        releaseHolder(session);
        if (session.lease) janitor?.sessionLost(session.id, session.lease);
      }
    },
  });
  const admin = await AdminListener.listen({
    metrics: inbound.metrics,
    readiness: () => (stopping ? 'the agent is shutting down' : true),
    ...config.admin,
  });
  log.info('agent.ready', {
    tunnel: `${config.tunnel.host}:${(tunnel.server.address() as AddressInfo).port}`,
    inbound: `${config.inbound.host}:${inbound.port}`,
    admin: `${config.admin.host}:${admin.port}`,
    upstream: config.upstream ? `${config.upstream.host}:${config.upstream.port}` : null,
  });

  const shutdown = async (signal: string) => {
    stopping = true;
    log.info('agent.stopping', { signal, sessions: registry.list().length, drainMs: config.drainMs });
    await janitor?.stop();
    // The mesh's proxies still send requests here until they learn this endpoint is gone, so the
    // inbound listener keeps serving a while. A session another replica also holds is handed to it
    // at once: its requests are forwarded there, and its tunnel closes once those in flight here
    // are done. The other tunnels close now, so their CLIs reconnect to another replica.
    const handedOver = new Set<TunnelConnection>();
    for (const session of registry.list()) {
      if (!peers?.directory.heldElsewhere(session.id)) continue;
      registry.unregister(session.id);
      handedOver.add(session.tunnel);
      releaseHolder(session);
    }
    const closeTunnels = (which: (connection: TunnelConnection) => boolean) => {
      for (const connection of tunnel.tunnels)
        if (which(connection)) connection.close(TunnelCode.closed, 'the agent is shutting down');
    };
    closeTunnels(
      (connection) => !handedOver.has(connection) || registry.list().some((s) => s.tunnel === connection),
    );
    tunnel.server.close();
    log.info('agent.draining', { handedOver: handedOver.size, drainMs: config.drainMs });
    if (peers) await new Promise((resolve) => setTimeout(resolve, config.drainMs));
    closeTunnels(() => true);
    peers?.stop();
    await Promise.all([inbound.close(), admin.close()]);
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((error: Error & { code?: string }) => {
  jsonLog().warn('agent.failed', { code: error.code ?? 'DETOUR_INTERNAL', reason: error.message });
  process.exit(2);
});
