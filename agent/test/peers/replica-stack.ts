/**
 * Replicas of one agent on loopback, for the tests and the benchmark (tests/bench/replicas.ts):
 * inbound listeners with their own session table and directory, sessions held through real tunnels
 * to "CLIs" that deliver to a local app, and the Lease annotation by which the others learn of them.
 */
import { LEASE_ANNOTATIONS } from '@detour/mesh-adapters';
import { SESSION_LABEL } from '@detour/mesh-adapters/session-records';
import { LocalAppForwarder } from '@detour/router/http/serve-from-tunnel';
import type { RouteFilter } from '@detour/router/match/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';
import { InboundListener } from '../../src/inbound/inbound-listener.ts';
import { PeerForwarder } from '../../src/peers/peer-forwarder.ts';
import { type LeaseView, SessionDirectory } from '../../src/peers/session-directory.ts';
import { hostAliases, SessionRegistry } from '../../src/session-registry.ts';
import { stealSession } from '../inbound/stack.ts';

export interface Replica {
  name: string;
  registry: SessionRegistry;
  directory: SessionDirectory;
  inbound: InboundListener;
  url: string;
}

export async function replica(name: string): Promise<Replica> {
  const registry = new SessionRegistry();
  const directory = new SessionDirectory(name);
  const inbound: InboundListener = await InboundListener.listen({
    registry,
    host: '127.0.0.1',
    peers: { directory, forwarder: new PeerForwarder(name, () => inbound.stats.errors.peer.inc()) },
  });
  return { name, registry, directory, inbound, url: `http://127.0.0.1:${inbound.port}` };
}

/** A session Lease as its holder annotates it. */
export function servedByLease(
  sessionId: string,
  pod: string,
  port: number,
  filter: RouteFilter,
  targetHost?: string,
): LeaseView {
  return {
    metadata: {
      name: `detour-${sessionId}`,
      labels: { [SESSION_LABEL]: sessionId },
      annotations: {
        [LEASE_ANNOTATIONS.servedBy]: JSON.stringify({
          holders: [{ pod, address: `127.0.0.1:${port}` }],
          mode: 'steal',
          filter,
          ...(targetHost !== undefined ? { targetHost } : {}),
        }),
      },
    },
  };
}

/**
 * Registers a steal session on `holder` through a real tunnel whose CLI end delivers to
 * `127.0.0.1:appPort`, and tells every replica of `all` about it, as the Lease watch would.
 */
export async function holdSession(
  holder: Replica,
  all: readonly Replica[],
  id: string,
  filter: RouteFilter,
  appPort: number,
  targetHost?: string,
): Promise<{ close(): Promise<void> }> {
  const tunnel = await tunnelPair();
  const forwarder = new LocalAppForwarder({ localPort: () => appPort });
  forwarder.attach(tunnel.client);
  holder.registry.register(
    stealSession(id, filter, tunnel.server, {
      hosts: targetHost === undefined ? undefined : hostAliases(targetHost),
      targetHost,
    }),
  );
  for (const r of all)
    r.directory.update(servedByLease(id, holder.name, holder.inbound.port, filter, targetHost));
  return {
    async close() {
      forwarder.close();
      await tunnel.close();
    },
  };
}
