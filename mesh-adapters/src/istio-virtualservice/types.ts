/**
 * The parts of Istio's networking.istio.io/v1 types that detour reads or writes. Every interface
 * keeps an index signature: fields detour does not know are carried through untouched. What detour
 * writes is checked at compile time against the generated `@kubernetes-models/istio` types (below).
 */
import type { IDestinationRule } from '@kubernetes-models/istio/networking.istio.io/v1/DestinationRule';
import type { IVirtualService } from '@kubernetes-models/istio/networking.istio.io/v1/VirtualService';
import type { KubeObject } from '../k8s-object.ts';
import type { StringMatch } from '../session-intent.ts';

export interface PortSelector {
  number?: number;
}

export interface Destination {
  host: string;
  subset?: string;
  port?: PortSelector;
  [field: string]: unknown;
}

export interface HTTPRouteDestination {
  destination: Destination;
  weight?: number;
  [field: string]: unknown;
}

export interface HTTPMatchRequest {
  name?: string;
  uri?: StringMatch;
  method?: StringMatch;
  authority?: StringMatch;
  headers?: Record<string, StringMatch>;
  withoutHeaders?: Record<string, StringMatch>;
  port?: number;
  gateways?: string[];
  sourceNamespace?: string;
  sourceLabels?: Record<string, string>;
  [field: string]: unknown;
}

export interface HTTPMirrorPolicy {
  destination: Destination;
  percentage?: { value: number };
  [field: string]: unknown;
}

export interface HTTPRoute {
  name?: string;
  match?: HTTPMatchRequest[];
  route?: HTTPRouteDestination[];
  delegate?: { name?: string; namespace?: string };
  mirror?: Destination;
  mirrorPercentage?: { value: number };
  mirrors?: HTTPMirrorPolicy[];
  [field: string]: unknown;
}

export interface L4Route {
  match?: Array<{ port?: number; [field: string]: unknown }>;
  [field: string]: unknown;
}

export interface VirtualServiceSpec {
  hosts?: string[];
  gateways?: string[];
  exportTo?: string[];
  http?: HTTPRoute[];
  tcp?: L4Route[];
  tls?: L4Route[];
  [field: string]: unknown;
}

export interface Subset {
  name: string;
  labels?: Record<string, string>;
  [field: string]: unknown;
}

export interface DestinationRuleSpec {
  host?: string;
  subsets?: Subset[];
  workloadSelector?: unknown;
  exportTo?: string[];
  [field: string]: unknown;
}

export type VirtualService = KubeObject<VirtualServiceSpec>;
export type DestinationRule = KubeObject<DestinationRuleSpec>;

export const VS_API_VERSION = 'networking.istio.io/v1';

// Compile-time checks that what detour writes is valid for the generated Istio schema types.
type GeneratedHTTPRoute = NonNullable<NonNullable<IVirtualService['spec']>['http']>[number];
type GeneratedSubset = NonNullable<NonNullable<IDestinationRule['spec']>['subsets']>[number];
/** The shape of the routes detour itself builds (no unknown fields). */
export interface DetourHTTPRoute {
  name: string;
  match: Array<{
    uri?: { exact: string } | { prefix: string } | { regex: string };
    method?: { exact: string } | { prefix: string } | { regex: string };
    authority?: { regex: string };
    headers?: Record<
      string,
      { exact: string } | { prefix: string } | { regex: string } | Record<string, never>
    >;
    withoutHeaders?: Record<
      string,
      { exact: string } | { prefix: string } | { regex: string } | Record<string, never>
    >;
    port?: number;
    gateways?: string[];
  }>;
  route: Array<{ destination: { host: string; subset?: string; port?: { number: number } } }>;
  headers?: { response: { set: Record<string, string> } };
  mirrors?: Array<{
    destination: { host: string; port?: { number: number } };
    percentage?: { value: number };
  }>;
}
type Assignable<A, B> = A extends B ? true : false;
export const detourRouteFitsIstioSchema: Assignable<DetourHTTPRoute, GeneratedHTTPRoute> = true;
export const detourSubsetFitsIstioSchema: Assignable<
  { name: string; labels: Record<string, string> },
  GeneratedSubset
> = true;
