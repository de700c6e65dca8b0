import { ApisApi, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';

const meshResources: Record<string, string[]> = {
  'networking.istio.io': ['virtualservices', 'destinationrules', 'envoyfilters'],
  'gateway.networking.k8s.io': ['httproutes'],
};

export interface MeshDiscovery {
  /** `<resource>.<group>` of the mesh CRDs the apiserver serves. */
  crds: string[];
  namespace: { name: string; labels: Record<string, string>; annotations: Record<string, string> };
}

/**
 * What mesh detection reads: the mesh CRDs served, found by API discovery (every user may read it;
 * listing CRDs would need a cluster-wide grant), and the target namespace's labels.
 */
export async function discoverMesh(kc: KubeConfig, namespace: string): Promise<MeshDiscovery> {
  const groups = (await kc.makeApiClient(ApisApi).getAPIVersions()).groups;
  const custom = kc.makeApiClient(CustomObjectsApi);
  const crds = (
    await Promise.all(
      Object.entries(meshResources).map(async ([group, wanted]) => {
        // Every served version: EnvoyFilter exists only in v1alpha3, not in the preferred v1.
        const versions = groups.find((candidate) => candidate.name === group)?.versions ?? [];
        const served = new Set<string>();
        for (const { version } of versions) {
          for (const resource of (await custom.getAPIResources({ group, version })).resources)
            served.add(resource.name);
        }
        return wanted.filter((resource) => served.has(resource)).map((resource) => `${resource}.${group}`);
      }),
    )
  ).flat();
  const ns = await kc.makeApiClient(CoreV1Api).readNamespace({ name: namespace });
  return {
    crds,
    namespace: {
      name: namespace,
      labels: ns.metadata?.labels ?? {},
      annotations: ns.metadata?.annotations ?? {},
    },
  };
}
