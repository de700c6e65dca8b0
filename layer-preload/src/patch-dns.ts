import dns from 'node:dns';
import net from 'node:net';
import { promisify } from 'node:util';
import type { ResolvedAddress } from '@detour/router/egress/dialer';
import type { EgressPolicy } from '@detour/router/egress/egress-policy';
import type { ProxyClient } from './proxy-client.ts';

type LookupOptions = { family?: number | string; all?: boolean };
type Callback = (err: Error | null, ...results: unknown[]) => void;
type Methods = Record<string, (...args: unknown[]) => unknown>;

/** The query methods of `dns`, `dns.promises` and their Resolvers, with their record type (`resolve` takes it as an argument). */
const queryTypes: Record<string, string | undefined> = {
  resolve: undefined,
  resolve4: 'A',
  resolve6: 'AAAA',
  // Answered with ENOTIMP and why: the local resolver would only say ENOTFOUND.
  resolveAny: 'ANY',
  resolveCaa: 'CAA',
  resolveCname: 'CNAME',
  resolveMx: 'MX',
  resolveNaptr: 'NAPTR',
  resolveNs: 'NS',
  resolveSoa: 'SOA',
  resolveSrv: 'SRV',
  resolveTxt: 'TXT',
};

/**
 * Resolves remote names from inside the cluster, through the proxy's RESOLVE_ALL: `dns.lookup`
 * (also promisified), `dns.promises.lookup`, and the A/AAAA queries of `dns.resolve*`, module-level
 * and on `Resolver` instances (the module's functions are bound to a default Resolver, so both are
 * patched). Local names and address literals use the system resolver as before.
 */
export function patchDns(policy: EgressPolicy, client: ProxyClient): void {
  const isRemote = (hostname: unknown): hostname is string =>
    typeof hostname === 'string' &&
    hostname !== '' &&
    !net.isIP(hostname) &&
    policy.decide(hostname) === 'remote';

  async function remoteLookup(hostname: string, options: unknown) {
    const opts: LookupOptions =
      typeof options === 'object' && options
        ? options
        : typeof options === 'number'
          ? { family: options }
          : {};
    const family =
      opts.family === 'IPv6' || opts.family === 6 ? 6 : opts.family === 'IPv4' || opts.family === 4 ? 4 : 0;
    const found = await client.resolve(hostname, family);
    return opts.all ? found : (found[0] as ResolvedAddress);
  }

  const originalLookup = dns.lookup;
  const lookup = function lookup(...args: unknown[]) {
    const [hostname, options, callback] = args;
    if (!isRemote(hostname)) return Reflect.apply(originalLookup, dns, args);
    const cb = (typeof options === 'function' ? options : callback) as Callback;
    remoteLookup(hostname, typeof options === 'function' ? {} : options).then(
      (found) => (Array.isArray(found) ? cb(null, found) : cb(null, found.address, found.family)),
      (err: Error) => cb(err),
    );
    return {};
  };
  // util.promisify(dns.lookup) resolves { address, family } like the original.
  Object.defineProperty(lookup, promisify.custom, {
    value: (hostname: string, options?: LookupOptions | number) =>
      dns.promises.lookup(hostname, options as never),
  });
  dns.lookup = lookup as unknown as typeof dns.lookup;

  const originalPromises = dns.promises.lookup;
  dns.promises.lookup = function lookupPromise(...args: unknown[]) {
    const [hostname, options] = args;
    if (!isRemote(hostname)) return Reflect.apply(originalPromises, dns.promises, args);
    return remoteLookup(hostname, options);
  } as typeof dns.promises.lookup;

  /** The answer of `resolve4`/`resolve6`/`resolve(name, 'A' | 'AAAA')` for a remote name. */
  async function remoteQuery(hostname: string, rrtype: string, options: unknown): Promise<unknown[]> {
    const family = rrtype === 'A' ? 4 : rrtype === 'AAAA' ? 6 : undefined;
    if (!family) {
      throw queryError(
        'ENOTIMP',
        rrtype,
        hostname,
        `detour answers only A and AAAA queries for cluster names (${hostname} goes to the cluster); use dns.lookup, or exclude the name with DETOUR_EGRESS_EXCLUDE to query the local resolver`,
      );
    }
    let found: ResolvedAddress[];
    try {
      found = await client.resolve(hostname, family);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ESERVFAIL';
      throw code.startsWith('DETOUR_') ? err : queryError(code, rrtype, hostname);
    }
    const addresses = found.filter((entry) => entry.family === family).map((entry) => entry.address);
    if (addresses.length === 0) throw queryError('ENODATA', rrtype, hostname);
    // The cluster's TTL does not come through the proxy: 0 says "do not cache".
    return (options as { ttl?: boolean } | undefined)?.ttl
      ? addresses.map((address) => ({ address, ttl: 0 }))
      : addresses;
  }

  const patchQueries = (target: Methods, style: 'callback' | 'promise') => {
    for (const [method, fixedType] of Object.entries(queryTypes)) {
      const original = target[method];
      if (typeof original !== 'function') continue;
      target[method] = function detourQuery(this: unknown, ...args: unknown[]) {
        const [hostname, second] = args;
        if (!isRemote(hostname)) return Reflect.apply(original, this, args);
        const rrtype = fixedType ?? (typeof second === 'string' ? second : 'A');
        const options = fixedType && typeof second === 'object' ? second : undefined;
        const answer = remoteQuery(hostname, rrtype, options);
        if (style === 'promise') return answer;
        const cb = args.findLast((arg) => typeof arg === 'function') as Callback;
        answer.then(
          (records) => cb(null, records),
          (err: Error) => cb(err),
        );
        return undefined;
      };
    }
  };
  patchQueries(dns as unknown as Methods, 'callback');
  patchQueries(dns.Resolver.prototype as unknown as Methods, 'callback');
  patchQueries(dns.promises as unknown as Methods, 'promise');
  patchQueries(dns.promises.Resolver.prototype as unknown as Methods, 'promise');
}

/** The error c-ares gives for a failed query (`queryA ENOTFOUND payments`), with detour's why. */
function queryError(code: string, rrtype: string, hostname: string, why?: string): NodeJS.ErrnoException {
  const syscall = `query${rrtype}`;
  return Object.assign(new Error(`${syscall} ${code} ${hostname}${why ? `: ${why}` : ''}`), {
    code,
    syscall,
    hostname,
  });
}
