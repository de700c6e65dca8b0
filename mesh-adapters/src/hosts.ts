/**
 * Istio host names as written in VirtualServices and DestinationRules: short names are relative to
 * the object's namespace (`orders` in namespace staging is orders.staging.svc.cluster.local),
 * `*.staging.svc.cluster.local` is a wildcard, anything with a dot is taken as written.
 */

export interface ParsedServiceHost {
  service: string;
  namespace: string;
  /** `cluster.local` */
  clusterDomain: string;
}

export function parseServiceHost(fqdn: string): ParsedServiceHost {
  const [service = '', namespace = '', _svc, ...domain] = fqdn.split('.');
  return { service, namespace, clusterDomain: domain.join('.') };
}

/** The FQDN a host entry means for an object in `objectNamespace`. */
export function resolveHost(host: string, objectNamespace: string, clusterDomain: string): string {
  return host.includes('.') || host === '*' ? host : `${host}.${objectNamespace}.svc.${clusterDomain}`;
}

export type HostMatch = 'exact' | 'wildcard' | 'none';

/** How a host entry of an object in `objectNamespace` covers the target FQDN. */
export function hostMatch(host: string, objectNamespace: string, targetFqdn: string): HostMatch {
  const { clusterDomain } = parseServiceHost(targetFqdn);
  const resolved = resolveHost(host, objectNamespace, clusterDomain);
  if (resolved === targetFqdn) return 'exact';
  if (resolved === '*') return 'wildcard';
  if (resolved.startsWith('*.') && targetFqdn.endsWith(resolved.slice(1))) return 'wildcard';
  return 'none';
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * An RE2 regex matching every `:authority` a caller may use for the Service — `orders`,
 * `orders.staging`, `orders.staging.svc`, the FQDN — with or without `:port`. Used when an object
 * serves several hosts and the session's route must not take requests for the others.
 */
export function authorityRegex(fqdn: string, port: number): string {
  const { service, namespace, clusterDomain } = parseServiceHost(fqdn);
  const tail = `(\\.${escapeRegex(namespace)}(\\.svc(\\.${escapeRegex(clusterDomain)})?)?)?`;
  return `${escapeRegex(service)}${tail}(:${port})?`;
}
