// Tier 1 proof: the real kube-apiserver with the Istio CRDs, driven through the developer identity
// that holds only manifests/rbac's ClusterRole. Needs the binaries from `npm run cluster:up`; starts
// the cluster itself when it is not running and stops it again afterwards.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  ApiException,
  AuthorizationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  Watch,
} from '@kubernetes/client-node';
import { kubeConfig, requireBinaries, useCluster } from '../cluster.ts';
import { waitFor } from '../wait.ts';

const namespace = `detour-tier1-${process.pid}`;
const vs = { group: 'networking.istio.io', version: 'v1', plural: 'virtualservices', namespace };

function virtualService(name: string, spec: Record<string, unknown>) {
  return { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name }, spec };
}

const ordersSpec = {
  hosts: ['orders'],
  http: [
    {
      match: [{ headers: { 'x-dev': { exact: 'dev-a' } } }],
      route: [{ destination: { host: 'orders-v2' } }],
    },
    { route: [{ destination: { host: 'orders' } }] },
  ],
};

/** The HTTP status of a rejected call (fails the test if the call succeeded). */
async function statusOf(call: Promise<unknown>): Promise<{ code: number; body: string }> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiException) return { code: error.code, body: String(error.body) };
    throw error;
  }
  assert.fail('the API server accepted a request it should have refused');
}

// Counted as a failed test (not only a cancelled suite) when nothing was built.
it('has the cluster binaries (built by npm run cluster:up)', () => {
  requireBinaries();
});

describe('tier 1 cluster: Istio CRDs, developer RBAC', () => {
  let stop: () => Promise<void> = async () => {};
  let dev: CustomObjectsApi;
  let namespaceCreated = false;

  before(async () => {
    stop = await useCluster((line) => console.log(`# ${line}`));
    await kubeConfig('admin')
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: namespace } } });
    namespaceCreated = true;
    dev = kubeConfig('developer').makeApiClient(CustomObjectsApi);
  });

  after(async () => {
    try {
      if (namespaceCreated)
        await kubeConfig('admin').makeApiClient(CoreV1Api).deleteNamespace({ name: namespace });
    } finally {
      await stop();
    }
  });

  it('creates, patches, watches and deletes a VirtualService as the developer', async () => {
    const events: string[] = [];
    const watch = new Watch(kubeConfig('developer'));
    const watching = await watch.watch(
      `/apis/networking.istio.io/v1/namespaces/${namespace}/virtualservices`,
      {},
      (phase, obj: { metadata?: { name?: string }; spec?: { http?: unknown[] } }) => {
        if (obj.metadata?.name === 'orders') events.push(`${phase}:${obj.spec?.http?.length}`);
      },
      () => {},
    );
    try {
      await dev.createNamespacedCustomObject({ ...vs, body: virtualService('orders', ordersSpec) });
      await dev.patchNamespacedCustomObject(
        {
          ...vs,
          name: 'orders',
          body: { spec: { http: [{ route: [{ destination: { host: 'orders' } }] }] } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      const patched = (await dev.getNamespacedCustomObject({
        ...vs,
        name: 'orders',
      })) as typeof ordersSpec & {
        spec: { http: unknown[] };
      };
      assert.equal(patched.spec.http.length, 1);
      await dev.deleteNamespacedCustomObject({ ...vs, name: 'orders' });
      await waitFor('ADDED, MODIFIED and DELETED watch events', () => events.length >= 3 && events, {
        timeoutMs: 10_000,
      });
      assert.deepEqual(events, ['ADDED:2', 'MODIFIED:1', 'DELETED:1']);
    } finally {
      watching.abort();
    }
  });

  it('rejects a VirtualService that breaks the CRD schema (type and CEL rule)', async () => {
    const wrongType = await statusOf(
      dev.createNamespacedCustomObject({ ...vs, body: virtualService('bad-type', { hosts: 'orders' }) }),
    );
    assert.equal(wrongType.code, 422);
    assert.match(wrongType.body, /spec\.hosts.*must be of type array/);

    const tooShortTimeout = await statusOf(
      dev.createNamespacedCustomObject({
        ...vs,
        body: virtualService('bad-timeout', {
          hosts: ['orders'],
          http: [{ timeout: '500us', route: [{ destination: { host: 'orders' } }] }],
        }),
      }),
    );
    assert.equal(tooShortTimeout.code, 422);
    assert.match(tooShortTimeout.body, /spec\.http\[0\]\.timeout/);
  });

  it('refuses the developer what manifests/rbac does not grant', async () => {
    const config = kubeConfig('developer');
    const deleteNamespace = await statusOf(
      config.makeApiClient(CoreV1Api).deleteNamespace({ name: namespace }),
    );
    assert.equal(deleteNamespace.code, 403);
    const createClusterRole = await statusOf(
      config
        .makeApiClient(RbacAuthorizationV1Api)
        .createClusterRole({ body: { metadata: { name: 'escalate' } } }),
    );
    assert.equal(createClusterRole.code, 403);
    const readSecrets = await statusOf(config.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace }));
    assert.equal(readSecrets.code, 403);
  });

  it('answers the developer what it may do (SelfSubjectAccessReview)', async () => {
    const authz = kubeConfig('developer').makeApiClient(AuthorizationV1Api);
    const ask = async (verb: string, group: string, resource: string) =>
      (
        await authz.createSelfSubjectAccessReview({
          body: { spec: { resourceAttributes: { namespace, verb, group, resource } } },
        })
      ).status?.allowed;
    assert.equal(await ask('create', 'networking.istio.io', 'virtualservices'), true);
    assert.equal(await ask('create', '', 'pods/portforward'), true);
    assert.equal(await ask('create', '', 'pods'), false);
  });

  it('garbage-collects objects owned by a Lease once the Lease is deleted (controller-manager)', async () => {
    const leases = kubeConfig('developer').makeApiClient(CoordinationV1Api);
    const lease = await leases.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: 'session-1' },
        spec: { holderIdentity: 'detour-dev', leaseDurationSeconds: 30 },
      },
    });
    const owned = virtualService('owned', {
      hosts: ['payments'],
      http: [{ route: [{ destination: { host: 'payments' } }] }],
    });
    Object.assign(owned.metadata, {
      ownerReferences: [
        { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'session-1', uid: lease.metadata?.uid },
      ],
    });
    await dev.createNamespacedCustomObject({ ...vs, body: owned });
    await leases.deleteNamespacedLease({ namespace, name: 'session-1' });
    await waitFor(
      'the Lease-owned VirtualService to be garbage-collected',
      async () => {
        const gone = await statusOf(dev.getNamespacedCustomObject({ ...vs, name: 'owned' })).catch(
          () => undefined,
        );
        return gone?.code === 404;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  });

  it('deletes a namespace with everything in it (namespace controller)', async () => {
    const core = kubeConfig('admin').makeApiClient(CoreV1Api);
    const doomed = `${namespace}-deleted`;
    await core.createNamespace({ body: { metadata: { name: doomed } } });
    await dev.createNamespacedCustomObject({
      ...vs,
      namespace: doomed,
      body: virtualService('leftover', {
        hosts: ['orders'],
        http: [{ route: [{ destination: { host: 'orders' } }] }],
      }),
    });
    await core.deleteNamespace({ name: doomed });
    await waitFor(
      `namespace ${doomed} to be gone`,
      async () => (await statusOf(core.readNamespace({ name: doomed })).catch(() => undefined))?.code === 404,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  });
});
