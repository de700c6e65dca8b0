import type { MatchableRequest, RequestMatcher, RouteFilter } from '@detour/router/match/index';
import type { TunnelConnection } from '@detour/router/tunnel/index';

/** A developer's session as the agent holds it: which requests are theirs and where to send them. */
export interface AgentSession {
  id: string;
  filter: RouteFilter;
  matcher: RequestMatcher;
  mode: 'steal' | 'mirror';
  /** Port of the local app the CLI should deliver to (the target's container port). */
  targetPort: number;
  tunnel: TunnelConnection;
  registeredAt: Date;
}

/**
 * The sessions served by this agent. Many developers share one agent; each request goes to the
 * first session whose filter matches (the mesh adapters refuse overlapping filters up front).
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, AgentSession>();

  register(session: AgentSession): void {
    this.sessions.set(session.id, session);
  }

  unregister(id: string): AgentSession | undefined {
    const session = this.sessions.get(id);
    this.sessions.delete(id);
    return session;
  }

  /** Drops every session of a tunnel that closed. */
  dropTunnel(tunnel: TunnelConnection): AgentSession[] {
    const dropped = [...this.sessions.values()].filter((session) => session.tunnel === tunnel);
    for (const session of dropped) this.sessions.delete(session.id);
    return dropped;
  }

  match(request: MatchableRequest): AgentSession | undefined {
    for (const session of this.sessions.values()) {
      if (!session.tunnel.isClosed && session.matcher.matches(request)) return session;
    }
    return undefined;
  }

  list(): AgentSession[] {
    return [...this.sessions.values()];
  }
}
