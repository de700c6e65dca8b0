import type { Duplex } from 'node:stream';

/** One resolved address, as `dns.lookup(name, { all: true })` returns it. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/**
 * Where the local process's outbound connections and DNS lookups are made. The CLI's loopback
 * SOCKS5 / HTTP CONNECT proxy serves the local process through one of these: `DirectDialer`
 * dials from this machine, the tunnel dialer asks the agent to dial from inside the cluster.
 */
export interface EgressDialer {
  /** Opens a byte stream to host:port. Rejects with an Error whose `code` is the errno-like cause
   * (ENOTFOUND, ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, DETOUR_TUNNEL_DOWN). */
  connect(host: string, port: number, signal?: AbortSignal): Promise<Duplex>;
  /** Resolves a name the way the dialing side would. Rejects with code ENOTFOUND for unknown names. */
  lookup(name: string, family: 0 | 4 | 6): Promise<ResolvedAddress[]>;
}
