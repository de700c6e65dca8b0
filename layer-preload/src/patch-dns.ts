import dns from 'node:dns';
import net from 'node:net';
import { promisify } from 'node:util';
import type { EgressPolicy } from '@detour/router/egress/egress-policy';
import type { ProxyClient } from './proxy-client.ts';

type LookupOptions = { family?: number | string; all?: boolean };
type LookupCallback = (err: Error | null, address?: unknown, family?: number) => void;

/**
 * Resolves remote names through the proxy's RESOLVE (from inside the cluster) by patching
 * `dns.lookup` and `dns.promises.lookup`; local names and address literals use the system
 * resolver as before. `dns.resolve*` (c-ares, no getaddrinfo) is not patched.
 */
export function patchDns(policy: EgressPolicy, client: ProxyClient): void {
  const originalLookup = dns.lookup;
  const originalPromises = dns.promises.lookup;
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
    return opts.all ? [found] : found;
  }

  const lookup = function lookup(...args: unknown[]) {
    const [hostname, options, callback] = args;
    if (!isRemote(hostname)) return Reflect.apply(originalLookup, dns, args);
    const cb = (typeof options === 'function' ? options : callback) as LookupCallback;
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

  dns.promises.lookup = function lookupPromise(...args: unknown[]) {
    const [hostname, options] = args;
    if (!isRemote(hostname)) return Reflect.apply(originalPromises, dns.promises, args);
    return remoteLookup(hostname, options);
  } as typeof dns.promises.lookup;
}
