/**
 * Which VirtualService (and DestinationRule) sidecars use for a host. Istio sorts config by
 * creation time (then name, namespace) and, for sidecars, uses the first VirtualService that
 * claims a host; later ones for the same host are ignored. Exact hosts win over wildcards.
 */
import type { ObservedObjects } from '../adapter.ts';
import { UneditableObjectError } from '../errors.ts';
import { hostMatch } from '../hosts.ts';
import { compareByAge, isKind, refOf } from '../k8s-object.ts';
import type { DestinationRule, VirtualService } from './types.ts';

export function virtualServicesOf(observed: ObservedObjects): VirtualService[] {
  return observed.filter((o) => isKind(o, 'networking.istio.io', 'VirtualService')) as VirtualService[];
}

export function destinationRulesOf(observed: ObservedObjects): DestinationRule[] {
  return observed.filter((o) => isKind(o, 'networking.istio.io', 'DestinationRule')) as DestinationRule[];
}

function bindsToMesh(vs: VirtualService): boolean {
  const gateways = vs.spec?.gateways ?? [];
  return gateways.length === 0 || gateways.includes('mesh');
}

export interface GoverningVirtualService {
  /** undefined: no VirtualService routes the host for sidecars (detour creates one). */
  virtualService?: VirtualService;
  warnings: string[];
}

export function governingVirtualService(observed: ObservedObjects, host: string): GoverningVirtualService {
  const warnings: string[] = [];
  const exact: VirtualService[] = [];
  const wildcard: VirtualService[] = [];
  const gatewayOnly: VirtualService[] = [];
  for (const vs of virtualServicesOf(observed)) {
    const hosts = vs.spec?.hosts ?? [];
    // A VirtualService without hosts is a delegate: it only applies through its root's route.
    if (hosts.length === 0) continue;
    const matches = hosts.map((h) => hostMatch(h, vs.metadata.namespace ?? '', host));
    const kind = matches.includes('exact') ? 'exact' : matches.includes('wildcard') ? 'wildcard' : 'none';
    if (kind === 'none') continue;
    if (!bindsToMesh(vs)) {
      gatewayOnly.push(vs);
      continue;
    }
    (kind === 'exact' ? exact : wildcard).push(vs);
  }
  exact.sort(compareByAge);
  wildcard.sort(compareByAge);
  for (const vs of gatewayOnly) {
    warnings.push(
      `VirtualService ${vs.metadata.namespace}/${vs.metadata.name} routes ${host} only for gateways ` +
        `${JSON.stringify(vs.spec?.gateways)}: requests entering through them are not redirected.`,
    );
  }
  const [first, ...ignored] = exact;
  if (first !== undefined) {
    if (ignored.length > 0) {
      warnings.push(
        `${exact.length} VirtualServices claim ${host}; sidecars use only the oldest, ` +
          `${first.metadata.namespace}/${first.metadata.name}, so detour edits that one and not ` +
          `${ignored.map((v) => `${v.metadata.namespace}/${v.metadata.name}`).join(', ')}.`,
      );
    }
    const exportTo = first.spec?.exportTo;
    if (exportTo !== undefined && !exportTo.includes('*')) {
      warnings.push(
        `VirtualService ${first.metadata.namespace}/${first.metadata.name} is exported only to ` +
          `${JSON.stringify(exportTo)}: callers in other namespaces do not see it, and so are not redirected.`,
      );
    }
    return { virtualService: first, warnings };
  }
  const [broad] = wildcard;
  if (broad !== undefined) {
    throw new UneditableObjectError(
      refOf(broad),
      'spec.hosts',
      `${host} is routed only through the wildcard host(s) ${JSON.stringify(broad.spec?.hosts)}; a route added ` +
        `there would also take requests for every other host it covers, and a new VirtualService for ` +
        `${host} alone would replace the wildcard's routes for it`,
      'use --mesh istio-envoyfilter, which adds the route for this host only',
    );
  }
  return { warnings };
}

export function governingDestinationRule(
  observed: ObservedObjects,
  host: string,
): DestinationRule | undefined {
  return destinationRulesOf(observed)
    .filter(
      (dr) =>
        dr.spec?.workloadSelector === undefined &&
        dr.spec?.host !== undefined &&
        hostMatch(dr.spec.host, dr.metadata.namespace ?? '', host) === 'exact',
    )
    .sort(compareByAge)[0];
}
