/**
 * Reading Envoy's own view of its routes (admin /config_dump): what proves istiod's config reached a
 * proxy and was accepted, rather than what istiod meant to send.
 */
export interface HeaderRoute {
  routeConfig: string;
  virtualHost: string;
  header: string;
  value: string;
  cluster: string;
}

type Json = Record<string, unknown>;

function asArray(value: unknown): Json[] {
  return Array.isArray(value) ? (value as Json[]) : [];
}

/** Every route matching an exact header value, with the cluster it sends to, from a config_dump body. */
export function headerRoutes(configDump: string): HeaderRoute[] {
  const found: HeaderRoute[] = [];
  const dump = JSON.parse(configDump) as Json;
  for (const section of asArray(dump.configs)) {
    // A full dump nests the entries in RoutesConfigDump.dynamic_route_configs; with
    // ?resource=dynamic_route_configs each entry is itself an element of `configs`.
    const entries =
      section.dynamic_route_configs === undefined ? [section] : asArray(section.dynamic_route_configs);
    for (const entry of entries) {
      const routeConfig = entry.route_config as Json | undefined;
      if (!routeConfig) continue;
      for (const host of asArray(routeConfig.virtual_hosts)) {
        for (const route of asArray(host.routes)) {
          const match = (route.match ?? {}) as Json;
          const cluster = ((route.route ?? {}) as Json).cluster;
          for (const header of asArray(match.headers)) {
            const exact = ((header.string_match ?? {}) as Json).exact ?? header.exact_match;
            if (typeof exact === 'string' && typeof cluster === 'string') {
              found.push({
                routeConfig: String(routeConfig.name),
                virtualHost: String(host.name),
                header: String(header.name),
                value: exact,
                cluster,
              });
            }
          }
        }
      }
    }
  }
  return found;
}

/** Envoy's outbound cluster name for a service subset (Istio's naming). */
export function subsetCluster(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
