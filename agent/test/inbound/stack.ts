/**
 * A whole inbound path on loopback for tests: inbound listener → session registry → a real
 * tunnel over TCP → the CLI's local app forwarder → a local app the test provides.
 */
import type { AddressInfo, Server } from 'node:net';
import { LocalAppForwarder } from '@detour/router/http/serve-from-tunnel';
import { compileFilter, type RouteFilter } from '@detour/router/match/index';
import type { TunnelConnection } from '@detour/router/tunnel/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';
import { InboundListener } from '../../src/inbound/inbound-listener.ts';
import { type RoutedSession, SessionRegistry } from '../../src/session-registry.ts';

export const devA: RouteFilter = { headers: { 'x-dev': { exact: 'dev-a' } } };

/** A steal session on target port 8080 held through `tunnel` (the agent's end), as registration makes it. */
export function stealSession(
  id: string,
  filter: RouteFilter,
  tunnel: TunnelConnection,
  extra: Partial<RoutedSession> = {},
): RoutedSession {
  return {
    id,
    filter,
    matcher: compileFilter(filter),
    mode: 'steal',
    targetPort: 8080,
    tunnel,
    registeredAt: new Date(),
    ...extra,
  };
}

export interface Stack {
  inbound: InboundListener;
  registry: SessionRegistry;
  tunnel: Awaited<ReturnType<typeof tunnelPair>>;
  forwarder: LocalAppForwarder;
  url: string;
  close(): Promise<void>;
}

export async function startStack(options: {
  /** Port the CLI delivers to (the "local app"). */
  appPort: number;
  upstream?: string;
  mode?: 'steal' | 'mirror';
  filter?: RouteFilter;
  sessionId?: string;
}): Promise<Stack> {
  const tunnel = await tunnelPair();
  const registry = new SessionRegistry();
  const filter = options.filter ?? devA;
  registry.register({
    id: options.sessionId ?? 'dev-a',
    filter,
    matcher: compileFilter(filter),
    mode: options.mode ?? 'steal',
    targetPort: 8080,
    tunnel: tunnel.server,
    registeredAt: new Date(),
  });
  const forwarder = new LocalAppForwarder({ localPort: () => options.appPort });
  forwarder.attach(tunnel.client);
  const inbound = await InboundListener.listen({ registry, host: '127.0.0.1', upstream: options.upstream });
  return {
    inbound,
    registry,
    tunnel,
    forwarder,
    url: `http://127.0.0.1:${inbound.port}`,
    async close() {
      // Every test ends with no stream left open on either end: a leak fails the test that caused it.
      const open = () => tunnel.server.openStreams + tunnel.client.openStreams;
      for (let i = 0; i < 100 && open() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      const leaked = { agent: tunnel.server.openStreams, cli: tunnel.client.openStreams };
      await inbound.close();
      forwarder.close();
      await tunnel.close();
      if (leaked.agent + leaked.cli > 0)
        throw new Error(`tunnel streams left open: ${JSON.stringify(leaked)}`);
    },
  };
}

export function portOf(server: Server | { address(): AddressInfo | string | null }): number {
  return (server.address() as AddressInfo).port;
}

export async function listen<S extends Server>(server: S): Promise<S> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
