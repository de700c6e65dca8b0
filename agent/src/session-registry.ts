import type { MatchableRequest, RequestMatcher, RouteFilter } from '@detour/router/match/index';
import type { TunnelConnection } from '@detour/router/tunnel/index';

interface SessionBase {
  id: string;
  tunnel: TunnelConnection;
  registeredAt: Date;
  /** Where the session's Lease lives, when it has one (cluster mode). */
  lease?: { name: string; namespace: string } | undefined;
}

/** A developer's session that takes requests: which requests are theirs and where to send them. */
export interface RoutedSession extends SessionBase {
  mode: 'steal' | 'mirror';
  filter: RouteFilter;
  matcher: RequestMatcher;
  /** Port of the local app the CLI should deliver to (the target's container port). */
  targetPort: number;
  /** Names the target Service answers to (`orders`, `orders.staging`, ... FQDN); undefined: any host. */
  hosts?: ReadonlySet<string> | undefined;
  /** The target Service's FQDN, as registered. */
  targetHost?: string | undefined;
}

/**
 * A session that takes no requests: only its process's outbound calls and DNS leave from here. It
 * is registered all the same, so the agent knows it is alive, and ends its Lease when its CLI
 * vanishes, exactly as for a routed session.
 */
export interface EgressOnlySession extends SessionBase {
  mode: 'egress-only';
}

export type AgentSession = RoutedSession | EgressOnlySession;

export function isRouted(session: AgentSession): session is RoutedSession {
  return session.mode !== 'egress-only';
}

/** A request as the inbound listener sees it: what filters match on, plus the host it was sent to. */
export interface InboundRequest extends MatchableRequest {
  /** `Host` / `:authority`, port included or not. */
  readonly authority?: string | undefined;
}

/** Every name a Service FQDN is reachable by from inside the cluster (search-path short forms). */
export function hostAliases(fqdn: string): Set<string> {
  const [name, namespace] = fqdn.toLowerCase().split('.');
  return new Set(
    [fqdn.toLowerCase(), name, `${name}.${namespace}`, `${name}.${namespace}.svc`].filter(
      (alias): alias is string => Boolean(alias),
    ),
  );
}

function hostOf(authority: string): string {
  return authority.replace(/:\d+$/, '').toLowerCase();
}

/**
 * The host a mirrored request was sent to: Envoy marks a mirror's authority with `-shadow`
 * (`orders-shadow:8080`, or after the port in older releases).
 */
function unshadowed(authority: string): string {
  return hostOf(authority.replace(/-shadow$/i, '')).replace(/-shadow$/, '');
}

/** Whether two sessions could receive the same request: they share a host (or either takes any). */
export function hostsOverlap(
  a: ReadonlySet<string> | undefined,
  b: ReadonlySet<string> | undefined,
): boolean {
  return a === undefined || b === undefined || [...a].some((host) => b.has(host));
}

/** What deciding whether a session takes a request needs: a local session and a peer's alike. */
export interface RequestTaker {
  mode: AgentSession['mode'];
  matcher?: RequestMatcher;
  hosts?: ReadonlySet<string> | undefined;
}

/**
 * The first of `candidates` (those `usable` says may take requests) that takes the request: it
 * names the request's host (a mirror also its `-shadow` form), or any host, and its filter matches.
 */
export function firstTaker<T extends RequestTaker>(
  candidates: Iterable<T>,
  request: InboundRequest,
  usable: (candidate: T) => boolean,
): (T & { matcher: RequestMatcher }) | undefined {
  for (const candidate of candidates) {
    if (!candidate.matcher || !usable(candidate)) continue;
    const hosts = candidate.hosts;
    if (hosts && request.authority !== undefined && !namesHost(hosts, candidate.mode, request.authority))
      continue;
    if (candidate.matcher.matches(request)) return candidate as T & { matcher: RequestMatcher };
  }
  return undefined;
}

/** Whether a taker that names its hosts takes a request sent to `authority` (only then computed). */
function namesHost(hosts: ReadonlySet<string>, mode: RequestTaker['mode'], authority: string): boolean {
  return hosts.has(hostOf(authority)) || (mode === 'mirror' && hosts.has(unshadowed(authority)));
}

function routedAndOpen(session: AgentSession): boolean {
  return isRouted(session) && !session.tunnel.isClosed;
}

/**
 * The sessions served by this agent. Many developers share one agent; each request goes to the
 * first session whose filter matches (the mesh adapters refuse overlapping filters up front).
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, AgentSession>();

  has(id: string): boolean {
    return this.sessions.has(id);
  }

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

  /**
   * The session a request belongs to. One agent serves sessions of several targets: a session
   * that names its target's hosts only takes requests sent to one of them.
   */
  match(request: InboundRequest): RoutedSession | undefined {
    return firstTaker(this.sessions.values(), request, routedAndOpen) as RoutedSession | undefined;
  }

  list(): AgentSession[] {
    return [...this.sessions.values()];
  }

  /** The sessions that take requests. */
  routed(): RoutedSession[] {
    return this.list().filter(isRouted);
  }
}
