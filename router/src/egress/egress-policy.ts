import net from 'node:net';
import { InvalidInputError } from '../errors.ts';

/**
 * Which outbound destinations leave from the cluster (remote) and which from this machine (local).
 * One syntax for every runtime: the CLI's proxy and the Node layer evaluate the same lists, which
 * travel as `DETOUR_EGRESS_INCLUDE` / `DETOUR_EGRESS_EXCLUDE` (comma-separated) to the layer.
 *
 * An entry is a host name (`payments`), a wildcard over subdomains (`*.corp.example`), an address
 * (`10.0.0.5`), a CIDR (`10.96.0.0/12`, `fd00::/8`) or `*` (everything).
 *
 * Order: exclude (local) wins, then include (remote), then loopback stays local, then cluster
 * names go remote (single-label names, `*.svc`, `*.svc.<clusterDomain>`, `*.<clusterDomain>`),
 * then addresses a remote lookup returned go remote; everything else stays local.
 */
export type EgressDecision = 'remote' | 'local';

export interface EgressPolicyConfig {
  include?: readonly string[];
  exclude?: readonly string[];
  /** The cluster's DNS domain, `cluster.local` unless the cluster says otherwise. */
  clusterDomain?: string;
}

export const policyEnv = {
  include: 'DETOUR_EGRESS_INCLUDE',
  exclude: 'DETOUR_EGRESS_EXCLUDE',
  clusterDomain: 'DETOUR_CLUSTER_DOMAIN',
} as const;

class HostList {
  readonly #names = new Set<string>();
  readonly #suffixes: string[] = [];
  readonly #blocks = new net.BlockList();
  #all = false;

  constructor(entries: readonly string[], listName: string) {
    for (const raw of entries) {
      const entry = normalizeHost(raw);
      if (!entry) continue;
      if (entry === '*') this.#all = true;
      else if (entry.startsWith('*.') && isHostName(entry.slice(2))) this.#suffixes.push(entry.slice(1));
      else if (entry.includes('/')) this.#addCidr(entry, raw, listName);
      else if (net.isIP(entry)) this.#blocks.addAddress(entry, net.isIPv6(entry) ? 'ipv6' : 'ipv4');
      else if (isHostName(entry)) this.#names.add(entry);
      else throw invalid(raw, listName);
    }
  }

  #addCidr(entry: string, raw: string, listName: string): void {
    const [address = '', bits = ''] = entry.split('/');
    const family = net.isIP(address);
    const prefix = Number(bits);
    if (!family || !/^\d+$/.test(bits) || prefix > (family === 6 ? 128 : 32)) throw invalid(raw, listName);
    this.#blocks.addSubnet(address, prefix, family === 6 ? 'ipv6' : 'ipv4');
  }

  matches(host: string): boolean {
    if (this.#all) return true;
    const family = net.isIP(host);
    if (family) return this.#blocks.check(host, family === 6 ? 'ipv6' : 'ipv4');
    return this.#names.has(host) || this.#suffixes.some((suffix) => host.endsWith(suffix));
  }
}

export class EgressPolicy {
  readonly config: Readonly<Required<EgressPolicyConfig>>;
  readonly #include: HostList;
  readonly #exclude: HostList;
  readonly #clusterSuffixes: string[];
  readonly #remoteAddresses = new Set<string>();

  constructor(config: EgressPolicyConfig = {}) {
    const clusterDomain = normalizeHost(config.clusterDomain ?? 'cluster.local');
    if (!isHostName(clusterDomain)) throw invalid(config.clusterDomain ?? '', 'clusterDomain');
    this.config = { include: config.include ?? [], exclude: config.exclude ?? [], clusterDomain };
    this.#include = new HostList(this.config.include, 'include');
    this.#exclude = new HostList(this.config.exclude, 'exclude');
    this.#clusterSuffixes = ['.svc', `.svc.${clusterDomain}`, `.${clusterDomain}`];
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): EgressPolicy {
    const list = (value: string | undefined) => (value ?? '').split(',').filter((s) => s.trim());
    return new EgressPolicy({
      include: list(env[policyEnv.include]),
      exclude: list(env[policyEnv.exclude]),
      ...(env[policyEnv.clusterDomain] ? { clusterDomain: env[policyEnv.clusterDomain] } : {}),
    });
  }

  /** The variables that carry this policy to the layer (and to `detour env`). */
  toEnv(): Record<string, string> {
    return {
      [policyEnv.include]: this.config.include.join(','),
      [policyEnv.exclude]: this.config.exclude.join(','),
      [policyEnv.clusterDomain]: this.config.clusterDomain,
    };
  }

  decide(rawHost: string): EgressDecision {
    const host = normalizeHost(rawHost);
    if (this.#exclude.matches(host)) return 'local';
    if (this.#include.matches(host)) return 'remote';
    if (isLoopback(host)) return 'local';
    if (net.isIP(host)) return this.#remoteAddresses.has(host) ? 'remote' : 'local';
    if (!host.includes('.')) return host ? 'remote' : 'local';
    return this.#clusterSuffixes.some((suffix) => host.endsWith(suffix)) ? 'remote' : 'local';
  }

  /** Addresses a remote lookup returned: a later connection to one of them goes remote too. */
  noteRemoteAddresses(addresses: Iterable<string>): void {
    for (const address of addresses) {
      if (!isLoopback(address)) this.#remoteAddresses.add(normalizeHost(address));
    }
  }
}

export function isLoopback(host: string): boolean {
  const h = normalizeHost(host);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  return h === '::1' || h.startsWith('::ffff:127.');
}

/** Lower case, no brackets around IPv6, no trailing dot. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  return h.endsWith('.') && h !== '*.' ? h.slice(0, -1) : h;
}

function isHostName(name: string): boolean {
  return /^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/.test(name);
}

function invalid(entry: string, listName: string): InvalidInputError {
  return new InvalidInputError(
    'DETOUR_EGRESS_POLICY_INVALID',
    `egress ${listName} entry "${entry}" is neither a host name, a *.suffix wildcard, an address nor a CIDR; ` +
      'fix it in the config file (e.g. payments, *.corp.example, 10.96.0.0/12)',
  );
}
