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
        const version = groups.find((candidate) => candidate.name === group)?.preferredVersion?.version;
        if (!version) return [];
        const served = (await custom.getAPIResources({ group, version })).resources.map(
          (resource) => resource.name,
        );
        return wanted
          .filter((resource) => served.includes(resource))
          .map((resource) => `${resource}.${group}`);
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
