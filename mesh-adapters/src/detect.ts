/**
 * Which adapter a session uses, as a pure function of what the cluster shows: the CRDs installed,
 * the target namespace's labels and annotations, and the ownership marks of the VirtualService that
 * would be edited. Always says why, so `detour` can print "using istio-envoyfilter: VirtualService
 * staging/orders is reconciled by Argo CD (label app.kubernetes.io/instance=orders)".
 */
import type { MeshKind } from './adapter.ts';
import { InvalidIntentError } from './errors.ts';
import { gitOpsOwner } from './gitops.ts';
import type { KubeObject } from './k8s-object.ts';

export interface DetectionInput {
  /** Names of the installed CRDs (`virtualservices.networking.istio.io`, ...). */
  crds: readonly string[];
  namespace: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  /** Labels of the target's pods: `sidecar.istio.io/inject` can opt a pod in or out. */
  podLabels?: Record<string, string>;
  /** The VirtualService the istio adapter would edit, if any. */
  governingVirtualService?: KubeObject;
  /** `--mesh`, when given. */
  override?: MeshKind;
}

export interface Detection {
  mesh: MeshKind;
  reason: string;
}

export const CRD = {
  virtualService: 'virtualservices.networking.istio.io',
  destinationRule: 'destinationrules.networking.istio.io',
  envoyFilter: 'envoyfilters.networking.istio.io',
  httpRoute: 'httproutes.gateway.networking.k8s.io',
} as const;

const MESH_KINDS: readonly MeshKind[] = ['istio', 'istio-envoyfilter', 'gateway-api', 'service'];

/** Why the target's pods have (or lack) an Istio sidecar, or undefined when they are not in the mesh. */
function istioSidecarReason(input: DetectionInput): string | undefined {
  const labels = input.namespace.labels ?? {};
  const podInject = input.podLabels?.['sidecar.istio.io/inject'];
  if (podInject === 'false') return undefined;
  if (labels['istio-injection'] === 'disabled')
    return podInject === 'true' ? 'pod label sidecar.istio.io/inject=true' : undefined;
  if (labels['istio-injection'] === 'enabled')
    return `namespace ${input.namespace.name} has istio-injection=enabled`;
  const rev = labels['istio.io/rev'];
  if (rev !== undefined) return `namespace ${input.namespace.name} has istio.io/rev=${rev}`;
  if (podInject === 'true') return 'pod label sidecar.istio.io/inject=true';
  return undefined;
}

export function detectMesh(input: DetectionInput): Detection {
  const has = (crd: string) => input.crds.includes(crd);
  const istio = has(CRD.virtualService) && has(CRD.destinationRule);
  const gatewayApi = has(CRD.httpRoute);

  if (input.override !== undefined) {
    if (!MESH_KINDS.includes(input.override)) {
      throw new InvalidIntentError(
        'mesh',
        `${JSON.stringify(input.override)} is not a mesh adapter`,
        `Use one of ${MESH_KINDS.join(', ')}.`,
      );
    }
    const needs: Partial<Record<MeshKind, [boolean, string]>> = {
      istio: [istio, `${CRD.virtualService} and ${CRD.destinationRule}`],
      'istio-envoyfilter': [has(CRD.envoyFilter), CRD.envoyFilter],
      'gateway-api': [gatewayApi, CRD.httpRoute],
    };
    const need = needs[input.override];
    if (need !== undefined && !need[0]) {
      throw new InvalidIntentError(
        'mesh',
        `--mesh ${input.override} needs the CRD ${need[1]}, which this cluster does not have`,
        'Install it, or leave --mesh out to detect what the cluster has.',
      );
    }
    return { mesh: input.override, reason: `--mesh ${input.override} given` };
  }

  const labels = input.namespace.labels ?? {};
  const ambient = labels['istio.io/dataplane-mode'] === 'ambient';
  if (istio && ambient && gatewayApi) {
    return {
      mesh: 'gateway-api',
      reason: `namespace ${input.namespace.name} is in Istio ambient mode (istio.io/dataplane-mode=ambient), where L7 routing is done by waypoints configured through Gateway API HTTPRoutes`,
    };
  }
  const sidecar = istio ? istioSidecarReason(input) : undefined;
  if (sidecar !== undefined) {
    const vs = input.governingVirtualService;
    const owner = vs === undefined ? undefined : gitOpsOwner(vs);
    if (vs !== undefined && owner !== undefined) {
      return {
        mesh: 'istio-envoyfilter',
        reason:
          `Istio (${sidecar}); VirtualService ${vs.metadata.namespace}/${vs.metadata.name} is reconciled by ` +
          `${owner.tool === 'argocd' ? 'Argo CD' : 'Flux'} (${owner.evidence}), so detour leaves it alone and adds an EnvoyFilter`,
      };
    }
    return { mesh: 'istio', reason: `Istio CRDs installed and ${sidecar}` };
  }
  const linkerd = input.namespace.annotations?.['linkerd.io/inject'] === 'enabled';
  if (gatewayApi && linkerd) {
    return {
      mesh: 'gateway-api',
      reason: `namespace ${input.namespace.name} is meshed by Linkerd (linkerd.io/inject=enabled), which routes Gateway API HTTPRoutes attached to Services (GAMMA)`,
    };
  }
  const why = istio
    ? `Istio is installed but namespace ${input.namespace.name} has no istio-injection=enabled or istio.io/rev label, so its pods have no sidecar`
    : 'no Istio CRDs and no GAMMA mesh found';
  return { mesh: 'service', reason: `${why}: pointing the Service at the agent instead (no mesh needed)` };
}
