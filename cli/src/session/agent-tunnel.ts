import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DetourError } from '@detour/router/errors';
import { TunnelConnection, type TunnelStream, TunnelVersionError } from '@detour/router/tunnel/index';
import { agentVersionFix, cliVersion } from '../version.ts';

export interface AgentTunnelOptions {
  /** Where the agent is, for messages: `host:port`, or the port-forward. */
  address: string;
  /** Opens one connection to the agent's tunnel port (per (re)connection): `dial`, or a port-forward's. */
  connect: () => Promise<Duplex>;
  token: string;
  client: string;
  /** Where the agent runs, when found in a cluster: the fix for a version mismatch names it. */
  namespace?: string;
  heartbeatMs?: number;
  /** Called after every (re)connection, before the tunnel counts as up: re-registers sessions. */
  onConnected: (tunnel: TunnelConnection) => Promise<void>;
  onStream: (stream: TunnelStream) => void;
}

/** What a session holds of the agent: one tunnel (direct mode) or one per replica (cluster). */
export interface AgentTunnels {
  /** First connection(s): resolves with one tunnel up, fails with why none came up. */
  start(): Promise<TunnelConnection>;
  /** A tunnel that is up, for egress and control requests; undefined while none is. */
  readonly current: TunnelConnection | undefined;
  /** Every tunnel that is up (the session is registered on each). */
  connections(): TunnelConnection[];
  /** Tunnels waiting to reconnect try now rather than after their backoff (the agent admits them again). */
  retryNow(): void;
  stop(): void;
}

interface AgentTunnelEvents {
  lost: [Error];
  restored: [number];
}

/** A TCP connection to host:port, resolved once connected. */
export function dial(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * The CLI's tunnel to the agent, kept up: when it drops (agent restarted, port-forward broken,
 * laptop asleep) it reconnects with backoff and runs `onConnected` again, so the session comes back.
 */
export class AgentTunnel extends EventEmitter<AgentTunnelEvents> implements AgentTunnels {
  #current: TunnelConnection | undefined;
  #stopped = false;
  /** Ends the wait before the next reconnection attempt. */
  #wake: AbortController | undefined;
  readonly #options: AgentTunnelOptions;

  constructor(options: AgentTunnelOptions) {
    super();
    this.#options = options;
  }

  get current(): TunnelConnection | undefined {
    return this.#current && !this.#current.isClosed ? this.#current : undefined;
  }

  connections(): TunnelConnection[] {
    return this.current ? [this.current] : [];
  }

  /** First connection: fails fast with a clear error, since nothing works without it. */
  async start(): Promise<TunnelConnection> {
    try {
      return await this.#connect();
    } catch (error) {
      const cause = error as Error & { code?: string };
      if (cause instanceof DetourError) throw cause;
      throw new DetourError(
        'DETOUR_AGENT_UNREACHABLE',
        `cannot reach the detour agent at ${this.#options.address} (${cause.code ?? cause.message}): check that the agent runs and the address or port-forward is right`,
        { cause },
      );
    }
  }

  async #connect(): Promise<TunnelConnection> {
    const { connect, token, client, heartbeatMs, namespace } = this.#options;
    const tunnel = await TunnelConnection.connect(
      await connect(),
      { token, client },
      { heartbeatMs, release: cliVersion, versionFix: (agent) => agentVersionFix(agent, namespace) },
    );
    tunnel.on('stream', this.#options.onStream);
    await this.#options.onConnected(tunnel);
    this.#current = tunnel;
    tunnel.once('close', (reason) => {
      if (this.#stopped) return;
      this.emit('lost', reason ?? new Error('the tunnel closed'));
      void this.#reconnect();
    });
    return tunnel;
  }

  async #reconnect(): Promise<void> {
    let delayMs = 100;
    let refusal = '';
    for (let attempt = 1; !this.#stopped; attempt++) {
      this.#wake = new AbortController();
      await sleep(delayMs, undefined, { signal: this.#wake.signal }).catch(() => {});
      if (this.#stopped) return;
      try {
        await this.#connect();
        this.emit('restored', attempt);
        return;
      } catch (error) {
        // An agent replaced by one of another protocol version refuses every attempt: say so (once),
        // with both versions and the fix, and keep trying (it may be rolled back).
        if (error instanceof TunnelVersionError && error.message !== refusal) {
          refusal = error.message;
          this.emit('lost', error);
        }
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    }
  }

  retryNow(): void {
    this.#wake?.abort();
  }

  stop(): void {
    this.#stopped = true;
    this.#wake?.abort();
    this.#current?.close();
  }
}
