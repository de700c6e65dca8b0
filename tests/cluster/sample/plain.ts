// A small copy of the sample in namespace `plain`, which has no Istio injection (no sidecars): the
// orders Service and Deployment (calling nobody), the caller pod, and the detour agent with
// DETOUR_UPSTREAM set to the shadow Service detour's `service` adapter creates for orders, so the
// agent passes requests no session matches to the real orders pods. The developer gets the
// no-mesh role (manifests/rbac/detour-developer-no-mesh.yaml) there, bound as its comment says.
// Applied as admin; idempotent.
import { agentManifests as renderAgentManifests } from '@detour/cli/install/agent-manifests';
import { shadowServiceName } from '@detour/mesh-adapters/service/adapter';
import { waitForPodsReady } from '../cluster.ts';
import { applyManifest } from '../istio/istio.ts';
import { archiveDigest, meshImages } from '../mesh.ts';
import {
  agentImage,
  appPort,
  callerPod,
  deployment,
  list,
  type Manifest,
  service,
  serviceAccount,
  waitForRollouts,
} from './sample.ts';

export const plainNamespace = 'plain';

function agent(digest: string): Manifest[] {
  const upstream = `${shadowServiceName('orders')}.${plainNamespace}.svc.cluster.local:${appPort}`;
  return renderAgentManifests({
    namespace: plainNamespace,
    image: agentImage,
    podAnnotations: { 'detour.local/image-digest': digest },
  }).map((object) => {
    if (object.kind === 'Deployment') {
      const spec = object.spec as { template: { spec: { containers: Array<{ env?: unknown[] }> } } };
      for (const container of spec.template.spec.containers) {
        container.env = [...(container.env ?? []), { name: 'DETOUR_UPSTREAM', value: upstream }];
      }
    }
    return object;
  });
}

/** Applies the copy (the sample images must be imported: useSample does it) and waits until it runs. */
export async function deployPlain(timeoutMs = 180_000): Promise<void> {
  const digest = archiveDigest(meshImages.sample);
  await applyManifest(
    list([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: plainNamespace } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'detour-developer-no-mesh-detour-dev', namespace: plainNamespace },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: 'detour-developer-no-mesh',
        },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'detour-dev' }],
      },
      serviceAccount('orders', plainNamespace),
      serviceAccount('caller', plainNamespace),
      service('orders', plainNamespace),
      deployment('orders', 'v1', digest, { PAYMENTS_URL: '' }, plainNamespace),
      callerPod(digest, plainNamespace),
      ...agent(archiveDigest(meshImages.agent)),
    ]),
  );
  await waitForRollouts(plainNamespace, ['orders', 'detour-agent'], timeoutMs);
  await waitForPodsReady(plainNamespace, ['caller'], timeoutMs);
}
