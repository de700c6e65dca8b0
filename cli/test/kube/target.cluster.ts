// Target resolution and the target's environment, against the real kube-apiserver of the local
// cluster (tier 1), through the developer identity bound to manifests/rbac.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { kubeConfig, useCluster } from '../../../tests/cluster/cluster.ts';
import { resolveTarget } from '../../src/kube/target.ts';
import { targetEnvironment } from '../../src/kube/target-env.ts';

const namespace = `detour-target-${process.pid}`;
const labels = { app: 'orders' };

describe('target resolution (real apiserver)', () => {
  let stop: () => Promise<void>;
  const developer = () => kubeConfig('developer');

  before(async () => {
    stop = await useCluster();
    const admin = kubeConfig('admin');
    const core = admin.makeApiClient(CoreV1Api);
    const apps = admin.makeApiClient(AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'orders-config' }, data: { LOG_LEVEL: 'debug', 'app.yaml': 'port: 8080\n' } },
    });
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'orders' },
        spec: {
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              containers: [
                {
                  name: 'orders',
                  image: 'detour/sample:dev',
                  ports: [{ name: 'http', containerPort: 8080 }],
                  envFrom: [
                    { configMapRef: { name: 'orders-config' } },
                    { secretRef: { name: 'orders-secrets' } },
                  ],
                  env: [
                    { name: 'PAYMENTS_URL', value: 'http://payments:8080' },
                    { name: 'CALLBACK', value: '$(PAYMENTS_URL)/callback' },
                    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                    { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } },
                  ],
                  volumeMounts: [{ name: 'config', mountPath: '/etc/orders' }],
                },
                { name: 'istio-proxy', image: 'proxy' },
              ],
              volumes: [
                {
                  name: 'config',
                  configMap: { name: 'orders-config', items: [{ key: 'app.yaml', path: 'app.yaml' }] },
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
        spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });
  });

  after(async () => {
    await kubeConfig('admin').makeApiClient(CoreV1Api).deleteNamespace({ name: namespace });
    await stop();
  });

  it('resolves deploy/NAME and a bare Service name to the same workload, container and Service port', async () => {
    for (const target of ['deploy/orders', 'orders']) {
      const resolved = await resolveTarget(developer(), { target, namespace });
      assert.deepEqual(resolved.workload, { kind: 'Deployment', name: 'orders' });
      assert.equal(resolved.container.name, 'orders');
      assert.deepEqual(resolved.service, {
        name: 'orders',
        host: `orders.${namespace}.svc.cluster.local`,
        port: 80,
        targetPort: 8080,
      });
    }
  });

  it('names what exists when the target does not', async () => {
    await assert.rejects(resolveTarget(developer(), { target: 'deploy/ordrs', namespace }), {
      code: 'DETOUR_TARGET_NOT_FOUND',
      message: `no Deployment "ordrs" in namespace ${namespace}; Deployments there: orders`,
    });
    await assert.rejects(resolveTarget(developer(), { target: 'job/x', namespace }), {
      code: 'DETOUR_BAD_OPTION',
      message: /expected deploy\/NAME/,
    });
    await assert.rejects(resolveTarget(developer(), { target: 'deploy/orders', namespace, port: 9999 }), {
      message: /no Service .* on port 9999/,
    });
  });

  it('copies the env and ConfigMap files, and lists the Secrets it did not read', async () => {
    const target = await resolveTarget(developer(), { target: 'deploy/orders', namespace });
    const root = mkdtempSync(join(tmpdir(), 'detour-root-'));
    const result = await targetEnvironment(developer(), target, root);
    assert.deepEqual(result.env, {
      LOG_LEVEL: 'debug',
      'app.yaml': 'port: 8080\n',
      PAYMENTS_URL: 'http://payments:8080',
      CALLBACK: 'http://payments:8080/callback',
      POD_NAMESPACE: namespace,
    });
    assert.equal(readFileSync(join(root, 'etc/orders/app.yaml'), 'utf8'), 'port: 8080\n');
    assert.equal(result.skipped.length, 2);
    assert.match(result.skipped.join('\n'), /envFrom Secret orders-secrets/);
    assert.match(result.skipped.join('\n'), /DB_PASSWORD: from Secret db/);
  });
});
