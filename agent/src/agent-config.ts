import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { InvalidInputError } from '@detour/router/errors';
import * as z from '@detour/router/zod';

const hostPort = z
  .string()
  .check(z.regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7700'));
/** A whole number of milliseconds from an environment variable, at least `min`. */
const milliseconds = (min: number, fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  z._default(z.coerce.number().check(z.int(), z.gte(min), z.lte(max)), fallback);

/** The agent is configured by environment variables only: that is what a pod spec sets. */
export const AgentConfig = z.object({
  /** Tunnel listener; keep it on loopback in a cluster so only port-forward reaches it. */
  DETOUR_TUNNEL_LISTEN: z._default(hostPort, '127.0.0.1:7700'),
  /** HTTP/1.1 + h2c listener for mesh-routed requests. */
  DETOUR_INBOUND_LISTEN: z._default(hostPort, '0.0.0.0:8080'),
  /** Health, readiness and Prometheus metrics. */
  DETOUR_ADMIN_LISTEN: z._default(hostPort, '0.0.0.0:9090'),
  /** Where requests that match no session go (no-mesh mode); without it they get a 404. */
  DETOUR_UPSTREAM: z.optional(hostPort),
  /** File with accepted session tokens, one per line. */
  DETOUR_TOKEN_FILE: z.optional(z.string()),
  /** Accepted session tokens, comma-separated (tests; prefer DETOUR_TOKEN_FILE). */
  DETOUR_TOKENS: z.optional(z.string()),
  DETOUR_AGENT_NAME: z._default(z.string(), hostname()),
  /** The pod's IP (downward API): with DETOUR_NAMESPACE, replicas forward each other the requests of the sessions they hold. */
  DETOUR_POD_IP: z.optional(
    z.string().check(z.regex(/^[0-9a-fA-F:.]+$/, 'expected an IP address (downward API status.podIP)')),
  ),
  /**
   * The Host of a request forwarded to another replica (a headless Service selecting the replicas,
   * so the mesh sends it with mutual TLS); without it, the replica's pod address.
   */
  DETOUR_PEER_HOST: z.optional(
    z.string().check(z.regex(/^[a-z0-9.-]+$/, 'expected a DNS name (the headless Service of the replicas)')),
  ),
  DETOUR_HEARTBEAT_MS: milliseconds(50, 5000),
  /** With replicas: how long a stopping agent keeps forwarding the requests the mesh still sends it (below the pod’s 30 s grace). */
  DETOUR_DRAIN_MS: milliseconds(0, 3_000, 25_000),
  /** Revert routes of sessions whose CLI vanished (needs the agent Role). */
  DETOUR_JANITOR: z._default(z.enum(['on', 'off']), 'off'),
  /** The agent's namespace (downward API); the janitor cleans there. */
  DETOUR_NAMESPACE: z.optional(z.string()),
  /** How long a dropped session may take to reconnect. */
  DETOUR_JANITOR_GRACE_MS: milliseconds(0, 15_000),
  /** How often expired leases are swept. */
  DETOUR_JANITOR_INTERVAL_MS: milliseconds(1000, 30_000),
});

export interface ListenAddress {
  host: string;
  port: number;
}

export interface ResolvedAgentConfig {
  tunnel: ListenAddress;
  inbound: ListenAddress;
  admin: ListenAddress;
  upstream: ListenAddress | undefined;
  tokens: string[];
  agentName: string;
  /** `ip:port` the other replicas reach this one's inbound listener at; undefined: no peers. */
  peerAddress: string | undefined;
  /** The Host of the hop to another replica (undefined: that replica's pod address). */
  peerHost: string | undefined;
  heartbeatMs: number;
  /** How long a stopping replica keeps its inbound listener (it forwards to the other replicas). */
  drainMs: number;
  /** The agent's namespace, when it talks to the apiserver: session Leases admit CLIs, the janitor cleans. */
  namespace: string | undefined;
  janitor: { graceMs: number; intervalMs: number } | undefined;
}

export function parseHostPort(value: string): ListenAddress {
  const at = value.lastIndexOf(':');
  return { host: value.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(value.slice(at + 1)) };
}

export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): ResolvedAgentConfig {
  const parsed = AgentConfig.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0]);
    throw new InvalidInputError(
      'DETOUR_AGENT_CONFIG',
      `${key}=${JSON.stringify(env[key])} is invalid: ${issue?.message}`,
    );
  }
  const config = parsed.data;
  const tokenText = config.DETOUR_TOKEN_FILE
    ? readFileSync(config.DETOUR_TOKEN_FILE, 'utf8').replaceAll('\n', ',')
    : (config.DETOUR_TOKENS ?? '');
  const tokens = tokenText
    .split(',')
    .map((token) => token.trim())
    .filter(Boolean);
  if (tokens.length === 0 && !config.DETOUR_NAMESPACE) {
    throw new InvalidInputError(
      'DETOUR_AGENT_CONFIG',
      'the agent admits no one: set DETOUR_NAMESPACE (CLIs are admitted by their session Lease) or DETOUR_TOKENS / DETOUR_TOKEN_FILE',
    );
  }
  return {
    tunnel: parseHostPort(config.DETOUR_TUNNEL_LISTEN),
    inbound: parseHostPort(config.DETOUR_INBOUND_LISTEN),
    admin: parseHostPort(config.DETOUR_ADMIN_LISTEN),
    upstream: config.DETOUR_UPSTREAM ? parseHostPort(config.DETOUR_UPSTREAM) : undefined,
    tokens,
    agentName: config.DETOUR_AGENT_NAME,
    peerAddress:
      config.DETOUR_POD_IP && config.DETOUR_NAMESPACE
        ? `${config.DETOUR_POD_IP.includes(':') ? `[${config.DETOUR_POD_IP}]` : config.DETOUR_POD_IP}:${parseHostPort(config.DETOUR_INBOUND_LISTEN).port}`
        : undefined,
    peerHost: config.DETOUR_PEER_HOST,
    heartbeatMs: config.DETOUR_HEARTBEAT_MS,
    drainMs: config.DETOUR_DRAIN_MS,
    namespace: config.DETOUR_NAMESPACE,
    janitor: janitorConfig(config),
  };
}

function janitorConfig(config: z.output<typeof AgentConfig>): ResolvedAgentConfig['janitor'] {
  if (config.DETOUR_JANITOR === 'off') return undefined;
  if (!config.DETOUR_NAMESPACE) {
    throw new InvalidInputError(
      'DETOUR_AGENT_CONFIG',
      'DETOUR_JANITOR=on needs DETOUR_NAMESPACE (set it from the downward API: fieldRef metadata.namespace)',
    );
  }
  return {
    graceMs: config.DETOUR_JANITOR_GRACE_MS,
    intervalMs: config.DETOUR_JANITOR_INTERVAL_MS,
  };
}
