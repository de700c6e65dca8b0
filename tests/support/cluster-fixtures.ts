import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalJson } from '@detour/mesh-adapters';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from './detour.ts';

const vsApi = (namespace: string) => ({
  group: 'networking.istio.io',
  version: 'v1',
  namespace,
  plural: 'virtualservices',
});

export interface VirtualServiceView {
  spec: { http: { name?: string }[] };
}

/**
 * A target for sessions in a fresh namespace: Deployment and Service `orders` (port 80 → 8080,
 * env PAYMENTS_URL), the agent's Service, and a VirtualService `orders` with two routes of its own.
 */
export class OrdersFixture {
  readonly namespace: string;
  readonly #admin: KubeConfig;
  originalSpec = '';

  constructor(admin: KubeConfig, namespace: string) {
    this.#admin = admin;
    this.namespace = namespace;
  }

  async create(): Promise<this> {
    const { namespace } = this;
    const core = this.#admin.makeApiClient(CoreV1Api);
    await core.createNamespace({
      body: { metadata: { name: namespace, labels: { 'istio-injection': 'enabled' } } },
    });
    await this.#admin.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'orders' },
        spec: {
          selector: { matchLabels: { app: 'orders' } },
          template: {
            metadata: { labels: { app: 'orders' } },
            spec: {
              containers: [
                {
                  name: 'orders',
                  image: 'detour/sample:dev',
                  ports: [{ name: 'http', containerPort: 8080 }],
                  env: [{ name: 'PAYMENTS_URL', value: 'http://payments:8080' }],
                },
              ],
            },
          },
        },
      },
    });
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'orders' },
        spec: { selector: { app: 'orders' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'detour-agent' },
        spec: {
          selector: { 'app.kubernetes.io/name': 'detour-agent' },
          ports: [{ name: 'http', port: 8080 }],
        },
      },
    });
    await this.#admin.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      ...vsApi(namespace),
      body: {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'orders' },
        spec: {
          hosts: ['orders'],
          http: [
            {
              name: 'canary',
              match: [{ headers: { 'x-canary': { exact: 'yes' } } }],
              route: [{ destination: { host: 'orders', subset: 'v2' } }],
            },
            { name: 'default', retries: { attempts: 3 }, route: [{ destination: { host: 'orders' } }] },
          ],
        },
      },
    });
    this.originalSpec = canonicalJson((await this.virtualService()).spec);
    return this;
  }

  async virtualService(): Promise<VirtualServiceView> {
    return (await this.#admin
      .makeApiClient(CustomObjectsApi)
      .getNamespacedCustomObject({ ...vsApi(this.namespace), name: 'orders' })) as VirtualServiceView;
  }

  async firstRouteName(): Promise<string | undefined> {
    return (await this.virtualService()).spec.http[0]?.name;
  }

  async restoredExactly(): Promise<boolean> {
    return canonicalJson((await this.virtualService()).spec) === this.originalSpec;
  }

  /**
   * The agent's own identity: its ServiceAccount and Role from manifests/agent in this namespace,
   * and a kubeconfig with a token for it, so tests prove the shipped Role is enough.
   */
  async agentKubeconfig(): Promise<string> {
    const { namespace } = this;
    const objects = ['serviceaccount.yaml', 'role.yaml'].flatMap((file) =>
      parseAllDocuments(readFileSync(join(repoRoot, 'manifests', 'agent', file), 'utf8')).map(
        (doc) => doc.toJS() as KubernetesObject,
      ),
    );
    const api = KubernetesObjectApi.makeApiClient(this.#admin);
    for (const object of objects)
      await api.create({ ...object, metadata: { ...object.metadata, namespace } });
    const token = await this.#admin.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
      name: 'detour-agent',
      namespace,
      body: { spec: { expirationSeconds: 3600 } },
    });
    const cluster = this.#admin.getCurrentCluster();
    if (!cluster) throw new Error('the admin kubeconfig has no cluster');
    const path = join(tmpdir(), `detour-agent-${namespace}.kubeconfig`);
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'local',
            cluster: { server: cluster.server, 'certificate-authority-data': caData(cluster) },
          },
        ],
        users: [{ name: 'detour-agent', user: { token: token.status?.token } }],
        contexts: [{ name: 'agent', context: { cluster: 'local', user: 'detour-agent', namespace } }],
        'current-context': 'agent',
      }),
    );
    return path;
  }

  async delete(): Promise<void> {
    await this.#admin.makeApiClient(CoreV1Api).deleteNamespace({ name: this.namespace });
  }
}

function caData(cluster: { caData?: string; caFile?: string }): string {
  return cluster.caData ?? readFileSync(cluster.caFile ?? '').toString('base64');
}
