import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CRD, type DetectionInput, detectMesh } from '../src/detect.ts';
import { InvalidIntentError } from '../src/errors.ts';
import { gitOpsOwner } from '../src/gitops.ts';
import type { KubeObject } from '../src/k8s-object.ts';
import { loadFixture } from './support.ts';

const istioCrds = [CRD.virtualService, CRD.destinationRule, CRD.envoyFilter];
const ns = (labels: Record<string, string> = {}, annotations: Record<string, string> = {}) => ({
  name: 'staging',
  labels,
  annotations,
});
const vs = (labels: Record<string, string> = {}, annotations: Record<string, string> = {}): KubeObject => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'orders', namespace: 'staging', labels, annotations },
});

describe('detectMesh', () => {
  const cases: Array<[string, DetectionInput, string, RegExp]> = [
    [
      'istio by injection label',
      { crds: istioCrds, namespace: ns({ 'istio-injection': 'enabled' }) },
      'istio',
      /istio-injection=enabled/,
    ],
    [
      'istio by revision label',
      { crds: istioCrds, namespace: ns({ 'istio.io/rev': 'canary' }) },
      'istio',
      /istio\.io\/rev=canary/,
    ],
    [
      'istio by pod label',
      { crds: istioCrds, namespace: ns(), podLabels: { 'sidecar.istio.io/inject': 'true' } },
      'istio',
      /pod label/,
    ],
    [
      'istio installed, namespace not injected',
      { crds: istioCrds, namespace: ns() },
      'service',
      /Istio is installed but namespace staging has no istio-injection/,
    ],
    [
      'injection disabled',
      { crds: istioCrds, namespace: ns({ 'istio-injection': 'disabled' }) },
      'service',
      /no sidecar/,
    ],
    [
      'pod opted out',
      {
        crds: istioCrds,
        namespace: ns({ 'istio-injection': 'enabled' }),
        podLabels: { 'sidecar.istio.io/inject': 'false' },
      },
      'service',
      /no sidecar/,
    ],
    [
      'Argo CD owns the VirtualService',
      {
        crds: istioCrds,
        namespace: ns({ 'istio-injection': 'enabled' }),
        governingVirtualService: vs({ 'app.kubernetes.io/instance': 'orders' }),
      },
      'istio-envoyfilter',
      /Argo CD \(label app\.kubernetes\.io\/instance=orders\)/,
    ],
    [
      'Flux kustomize owns the VirtualService',
      {
        crds: istioCrds,
        namespace: ns({ 'istio-injection': 'enabled' }),
        governingVirtualService: vs({ 'kustomize.toolkit.fluxcd.io/name': 'apps' }),
      },
      'istio-envoyfilter',
      /Flux \(label kustomize\.toolkit\.fluxcd\.io\/name=apps\)/,
    ],
    [
      'Flux helm owns the VirtualService',
      {
        crds: istioCrds,
        namespace: ns({ 'istio-injection': 'enabled' }),
        governingVirtualService: vs({ 'helm.toolkit.fluxcd.io/name': 'orders' }),
      },
      'istio-envoyfilter',
      /Flux/,
    ],
    [
      'ambient mode with Gateway API',
      { crds: [...istioCrds, CRD.httpRoute], namespace: ns({ 'istio.io/dataplane-mode': 'ambient' }) },
      'gateway-api',
      /ambient/,
    ],
    [
      'Linkerd with Gateway API',
      { crds: [CRD.httpRoute], namespace: ns({}, { 'linkerd.io/inject': 'enabled' }) },
      'gateway-api',
      /Linkerd/,
    ],
    ['nothing', { crds: [], namespace: ns() }, 'service', /no Istio CRDs and no GAMMA mesh/],
    [
      'override',
      { crds: istioCrds, namespace: ns(), override: 'istio-envoyfilter' },
      'istio-envoyfilter',
      /--mesh istio-envoyfilter given/,
    ],
  ];
  for (const [name, input, mesh, reason] of cases) {
    test(name, () => {
      const detection = detectMesh(input);
      assert.equal(detection.mesh, mesh);
      assert.match(detection.reason, reason);
    });
  }

  test('an override the cluster cannot serve names the missing CRD', () => {
    assert.throws(
      () => detectMesh({ crds: [], namespace: ns(), override: 'gateway-api' }),
      (e: unknown) =>
        e instanceof InvalidIntentError && /httproutes\.gateway\.networking\.k8s\.io/.test(e.message),
    );
    assert.throws(
      () => detectMesh({ crds: [], namespace: ns(), override: 'linkerd' as never }),
      /not a mesh adapter/,
    );
  });
});

describe('gitOpsOwner', () => {
  test('Argo CD annotation, Argo CD tracking label, Flux labels, nothing', () => {
    assert.equal(gitOpsOwner(loadFixture('virtualservices/argocd.yaml')[0] as KubeObject)?.tool, 'argocd');
    assert.deepEqual(gitOpsOwner(vs({}, { 'argocd.argoproj.io/sync-wave': '1' })), {
      tool: 'argocd',
      evidence: 'annotation argocd.argoproj.io/sync-wave=1',
    });
    assert.equal(gitOpsOwner(vs({ 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' }))?.tool, 'flux');
    assert.equal(gitOpsOwner(vs({ app: 'orders', 'app.kubernetes.io/managed-by': 'Helm' })), undefined);
  });
});
