import { DetourError } from '@detour/router/errors';
import { compileFilter, filtersOverlap, formatFilter, validateFilter } from '@detour/router/match/index';
import type { TunnelConnection } from '@detour/router/tunnel/index';
import { RouteProbeParams } from '@detour/router/tunnel/protocol';
import * as z from '@detour/router/zod';
import type { RouteProbes } from './route-probe.ts';
import {
  type AgentSession,
  hostAliases,
  hostsOverlap,
  isRouted,
  type RoutedSession,
  type SessionRegistry,
} from './session-registry.ts';

const SessionId = z
  .string()
  .check(z.regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a session id is 1-63 lower-case letters, digits and dashes'));
/** The session's Lease in the cluster: the agent ends it if the CLI does not come back. */
const LeaseRef = z.optional(
  z.object({ name: z.string().check(z.minLength(1)), namespace: z.string().check(z.minLength(1)) }),
);

export const RegisterSessionParams = z.discriminatedUnion('mode', [
  z.object({
    id: SessionId,
    filter: z.unknown(),
    allowMatchAll: z._default(z.boolean(), false),
    mode: z.enum(['steal', 'mirror']),
    targetPort: z.int().check(z.gte(1), z.lte(65535)),
    /** FQDN of the target Service; without it the session takes matching requests for any host. */
    targetHost: z.optional(z.string().check(z.minLength(1), z.maxLength(253))),
    lease: LeaseRef,
  }),
  /** Takes no requests: registered so the agent tracks it (and ends its Lease) like any session. */
  z.strictObject({ id: SessionId, mode: z.literal('egress-only'), lease: LeaseRef }),
]);
export type RegisterSessionParams = z.input<typeof RegisterSessionParams>;
const UnregisterSessionParams = z.object({ id: z.string() });

export interface SessionSummary {
  id: string;
  mode: AgentSession['mode'];
  /** What the session takes; absent for egress-only sessions, which take nothing. */
  filter?: string;
  targetPort?: number;
  holder: string;
  since: string;
}

export function summarize(session: AgentSession): SessionSummary {
  return {
    id: session.id,
    ...(isRouted(session)
      ? { filter: formatFilter(session.filter), mode: session.mode, targetPort: session.targetPort }
      : { mode: session.mode }),
    holder: session.tunnel.peerName,
    since: session.registeredAt.toISOString(),
  };
}

function routedSession(
  registry: SessionRegistry,
  tunnel: TunnelConnection,
  params: Extract<z.output<typeof RegisterSessionParams>, { mode: 'steal' | 'mirror' }>,
): RoutedSession {
  const { id, mode, targetPort, allowMatchAll, targetHost } = params;
  const filter = validateFilter(params.filter, 'filter', { allowMatchAll });
  const hosts = targetHost === undefined ? undefined : hostAliases(targetHost);
  const holder = registry
    .routed()
    .find(
      (other) =>
        other.id !== id &&
        other.targetPort === targetPort &&
        other.mode === mode &&
        hostsOverlap(other.hosts, hosts) &&
        filtersOverlap(other.filter, filter),
    );
  if (holder) {
    throw new DetourError(
      'DETOUR_FILTER_HELD',
      `the filter ${formatFilter(filter)} on port ${targetPort} is held by session ${holder.id} of ${holder.tunnel.peerName} since ${holder.registeredAt.toISOString()}: choose another header value`,
    );
  }
  return {
    id,
    filter,
    matcher: compileFilter(filter),
    mode,
    targetPort,
    tunnel,
    registeredAt: new Date(),
    hosts,
    targetHost,
    lease: params.lease,
  };
}

/**
 * Serves the control requests a CLI sends over its tunnel: register and unregister sessions, list
 * them. A filter another live session already holds on the same port is refused with who holds it.
 * When the tunnel closes its sessions are dropped and reported to `onDropped`. A registration is
 * answered once `onRegistered` is done (the other replicas learn of it there), so the route the
 * CLI writes next finds every replica ready.
 */
export function serveSessionControl(
  registry: SessionRegistry,
  tunnel: TunnelConnection,
  onDropped: (sessions: AgentSession[]) => void = () => {},
  probes?: RouteProbes,
  onRegistered?: (session: AgentSession) => Promise<void>,
): void {
  tunnel.on('close', () => onDropped(registry.dropTunnel(tunnel)));
  tunnel.onControl((method: string, params: unknown): unknown => {
    switch (method) {
      case 'session.register': {
        const parsed = RegisterSessionParams.safeParse(params);
        if (!parsed.success)
          throw new DetourError(
            'DETOUR_INVALID_SESSION',
            `invalid session: ${parsed.error.issues[0]?.message}`,
          );
        const session: AgentSession =
          parsed.data.mode === 'egress-only'
            ? { ...parsed.data, mode: 'egress-only', tunnel, registeredAt: new Date() }
            : routedSession(registry, tunnel, parsed.data);
        registry.register(session);
        if (!onRegistered) return summarize(session);
        return onRegistered(session).then(() => summarize(session));
      }
      case 'session.unregister': {
        const { id } = UnregisterSessionParams.parse(params);
        const session = registry
          .list()
          .find((candidate) => candidate.id === id && candidate.tunnel === tunnel);
        if (session) registry.unregister(id);
        return { removed: Boolean(session) };
      }
      case 'session.list':
        return registry.list().map(summarize);
      case 'route.probe': {
        const { url, headers, ...options } = RouteProbeParams.parse(params);
        if (!probes) throw new DetourError('DETOUR_UNKNOWN_METHOD', 'this agent does not probe routes');
        return probes.probe(url, headers, options);
      }
      default:
        throw new DetourError(
          'DETOUR_UNKNOWN_METHOD',
          `the agent does not know the control request ${method}: use a CLI of the same release`,
        );
    }
  });
}
