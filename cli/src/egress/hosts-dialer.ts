import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { EgressDialer, ResolvedAddress } from '@detour/router/egress/dialer';

export interface HostsTable {
  /** name → addresses, like a cluster's DNS (`payments` → `10.96.0.10`). */
  names: Record<string, string[]>;
  /** `address:port` → where it is really served (`10.96.0.10:80` → `127.0.0.1:41234`). */
  endpoints: Record<string, { host: string; port: number }>;
}

/**
 * A stand-in cluster built from a table: names resolve from `names`, and `address:port` is dialed
 * where `endpoints` says, through another dialer. For tests and demos that need "cluster-only"
 * names without a cluster; names missing from the table fail with ENOTFOUND like the cluster's DNS.
 */
export class HostsDialer implements EgressDialer {
  readonly #table: HostsTable;
  readonly #inner: EgressDialer;

  constructor(table: HostsTable, inner: EgressDialer) {
    this.#table = table;
    this.#inner = inner;
  }

  async lookup(name: string, family: 0 | 4 | 6): Promise<ResolvedAddress[]> {
    const found = (this.#table.names[name.toLowerCase()] ?? [])
      .map((address) => ({ address, family: net.isIPv6(address) ? (6 as const) : (4 as const) }))
      .filter((a) => family === 0 || a.family === family);
    if (found.length === 0) {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), {
        code: 'ENOTFOUND',
        syscall: 'getaddrinfo',
        hostname: name,
      });
    }
    return found;
  }

  async connect(host: string, port: number, signal?: AbortSignal): Promise<Duplex> {
    const address = net.isIP(host) ? host : ((await this.lookup(host, 0))[0]?.address ?? host);
    const endpoint =
      this.#table.endpoints[net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`];
    if (!endpoint) {
      throw Object.assign(new Error(`connect ECONNREFUSED ${address}:${port}`), { code: 'ECONNREFUSED' });
    }
    return this.#inner.connect(endpoint.host, endpoint.port, signal);
  }
}
