import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  allAdapters,
  buildLease,
  InMemoryCluster,
  type KubeObject,
  memoryClient,
  runJanitor,
} from '@detour/mesh-adapters';
import {
  agentManifests,
  EPHEMERAL_AGENT_LABEL_VALUE,
  ephemeralAgentObjects,
  ephemeralAgentService,
  INSTALL_LABELS,
} from '../../src/install/agent-manifests.ts';
import { sessionPermissions } from '../../src/install/doctor.ts';
import {
  applyObjects,
  meshIdentity,
  rolloutState,
  uninstallAgent,
  waitForRollout,
} from '../../src/install/installer.ts';
import { roleGranting } from '../../src/install/rbac-manifests.ts';
import type { Reporter } from '../../src/reporter.ts';

const lines: string[] = [];
const reporter: Reporter = {
  step: (_event, text) => lines.push(text),
  warn: (_event, text) => lines.push(`warning: ${text}`),
  fail: () => {},
};

type PodSpec = {
  securityContext?: unknown;
  serviceAccountName?: string;
  containers: Array<{
    image: string;
    securityContext?: unknown;
    env?: Array<{ name: string; value?: string }>;
  }>;
};
type Template = { metadata: { labels: Record<string, string> }; spec: PodSpec };

const templateOf = (deployment: KubeObject) => (deployment.spec as { template: Template }).template;
const byKind = (objects: readonly KubeObject[], kind: string) => {
  const found = objects.find((o) => o.kind === kind);
  assert.ok(found, `a ${kind}`);
  return found;
};

function liveLease(namespace: string, sessionId: string, now = new Date()): KubeObject {
  return buildLease(
    {
      sessionId,
      target: { namespace, host: `orders.${namespace}.svc.cluster.local`, port: 8080 },
      mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: sessionId } } } },
      agent: { name: 'detour-agent', namespace, port: 8080 },
      holder: `${sessionId}@laptop`,
      lease: { name: `detour-${sessionId}`, namespace },
    },
    now,
  );
}

describe('manifests/agent rendered for a namespace', () => {
  const objects = agentManifests({ namespace: 'team-a', image: 'registry.example/detour/agent:1.2.3' });

  it('puts every object in the namespace with the install labels, the image in the pods', () => {
    assert.deepEqual(objects.map((o) => o.kind).sort(), [
      'Deployment',
      'PodDisruptionBudget',
      'Role',
      'RoleBinding',
      'Service',
      'Service',
      'ServiceAccount',
    ]);
    for (const object of objects) {
      assert.equal(object.metadata.namespace, 'team-a');
      assert.equal(object.metadata.labels?.['app.kubernetes.io/managed-by'], 'detour-install');
    }
    const template = templateOf(byKind(objects, 'Deployment'));
    assert.deepEqual(
      template.spec.containers.map((c) => c.image),
      ['registry.example/detour/agent:1.2.3'],
    );
    assert.equal(template.metadata.labels['app.kubernetes.io/managed-by'], 'detour-install');
    const binding = byKind(objects, 'RoleBinding') as unknown as { subjects: Array<{ namespace: string }> };
    assert.equal(binding.subjects[0]?.namespace, 'team-a');
  });

  it('has the replicas forward each other through a headless Service (mutual TLS under a mesh)', () => {
    const peers = objects.find((o) => o.metadata.name === 'detour-agent-peers');
    const spec = peers?.spec as { clusterIP: string; selector: Record<string, string> };
    assert.equal(spec.clusterIP, 'None');
    assert.deepEqual(spec.selector, { 'app.kubernetes.io/name': 'detour-agent' });
    const env = templateOf(byKind(objects, 'Deployment')).spec.containers[0]?.env ?? [];
    assert.deepEqual(
      env.find((e) => e.name === 'DETOUR_PEER_HOST'),
      { name: 'DETOUR_PEER_HOST', value: 'detour-agent-peers.$(DETOUR_NAMESPACE)' },
    );
  });

  it('runs two replicas under a disruption budget by default, and --replicas N of them', () => {
    assert.equal((byKind(objects, 'Deployment').spec as { replicas: number }).replicas, 2);
    assert.deepEqual(
      (byKind(objects, 'PodDisruptionBudget').spec as { minAvailable: number }).minAvailable,
      1,
    );
    const three = agentManifests({ namespace: 'team-a', image: 'detour/agent:1.2.3', replicas: 3 });
    assert.equal((byKind(three, 'Deployment').spec as { replicas: number }).replicas, 3);
  });

  it('is idempotent: a second install writes nothing, a new image replaces the Deployment only', async () => {
    const cluster = new InMemoryCluster();
    const client = memoryClient(cluster);
    const first = await applyObjects(client, objects);
    assert.deepEqual(new Set(first.map((r) => r.outcome)), new Set(['created']));
    const again = await applyObjects(client, objects);
    assert.deepEqual(new Set(again.map((r) => r.outcome)), new Set(['unchanged']));
    const upgraded = await applyObjects(
      client,
      agentManifests({ namespace: 'team-a', image: 'detour/agent:2' }),
    );
    assert.deepEqual(
      upgraded.filter((r) => r.outcome !== 'unchanged').map((r) => `${r.ref.kind} ${r.outcome}`),
      ['Deployment updated'],
    );
  });

  it('is left alone by the janitor (its labels are not those of session objects)', async () => {
    const cluster = new InMemoryCluster();
    await applyObjects(memoryClient(cluster), objects);
    const result = await runJanitor(memoryClient(cluster), allAdapters(), () => new Date());
    assert.deepEqual(result.applied, []);
    assert.equal(cluster.list().length, objects.length);
  });
});

describe('the rollout', () => {
  const deployment = (status: Record<string, number>, generation = 2): KubeObject => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'detour-agent', namespace: 'ns', generation },
    spec: { replicas: 1, selector: { matchLabels: { app: 'a' } } },
    status,
  });
  const pod = (waiting?: string): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'detour-agent-x', namespace: 'ns', labels: { app: 'a' } },
    status: {
      phase: 'Pending',
      containerStatuses: [{ name: 'agent', state: waiting ? { waiting: { reason: waiting } } : {} }],
    },
  });

  it('is done when the new generation is observed, updated and available, and old pods are gone', () => {
    const ready = {
      observedGeneration: 2,
      replicas: 1,
      updatedReplicas: 1,
      readyReplicas: 1,
      availableReplicas: 1,
    };
    assert.equal(rolloutState(deployment(ready), []).done, true);
    assert.equal(rolloutState(deployment({ ...ready, observedGeneration: 1 }), []).done, false);
    assert.equal(rolloutState(deployment({ ...ready, replicas: 2 }), []).done, false, 'an old pod remains');
    const waiting = rolloutState(deployment({ observedGeneration: 2 }), [pod('ContainerCreating')]);
    assert.equal(waiting.done, false);
    assert.match(
      waiting.summary,
      /0 of 1 pod\(s\) ready; detour-agent-x: Pending \(agent: ContainerCreating\)/,
    );
    assert.equal(waiting.hopeless, undefined);
  });

  it('fails at once, naming the pod and the fix, when an image cannot be pulled', async () => {
    const cluster = new InMemoryCluster([deployment({ observedGeneration: 2 }), pod('ErrImagePull')]);
    await assert.rejects(
      waitForRollout(memoryClient(cluster), { namespace: 'ns', name: 'detour-agent' }, reporter, 60_000, 10),
      (error: Error & { code?: string }) =>
        error.code === 'DETOUR_INSTALL_ROLLOUT' && /ErrImagePull.*--image REF/.test(error.message),
    );
  });

  it('reports the mesh identity of an injected pod', () => {
    const injected: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'team-a' },
      spec: { serviceAccountName: 'detour-agent', initContainers: [{ name: 'istio-proxy' }], containers: [] },
    };
    assert.deepEqual(meshIdentity(injected), {
      sidecar: true,
      spiffe: 'spiffe://cluster.local/ns/team-a/sa/detour-agent',
    });
    assert.deepEqual(meshIdentity({ ...injected, spec: { containers: [{ name: 'agent' }] } }), {
      sidecar: false,
    });
  });
});

describe('uninstall', () => {
  const installed = agentManifests({ namespace: 'team-a', image: 'detour/agent:1' });
  const others: KubeObject[] = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'orders', namespace: 'team-a' } },
    // Same name, other namespace: not this install's.
    {
      ...structuredClone(byKind(installed, 'Service')),
      metadata: { ...byKind(installed, 'Service').metadata, namespace: 'team-b' },
    },
  ];

  async function clusterWith(extra: KubeObject[] = []) {
    const cluster = new InMemoryCluster([...others, ...extra]);
    await applyObjects(memoryClient(cluster), installed);
    return cluster;
  }

  const uninstall = (cluster: InMemoryCluster, force = false, timeoutMs = 1000) =>
    uninstallAgent({ client: memoryClient(cluster), namespace: 'team-a', force, reporter, timeoutMs });

  it('refuses while a session is live, naming it, and changes nothing', async () => {
    const cluster = await clusterWith([liveLease('team-a', 'dev-a')]);
    const before = cluster.list();
    await assert.rejects(
      uninstall(cluster),
      (error: Error & { code?: string }) =>
        error.code === 'DETOUR_SESSIONS_LIVE' && /dev-a of dev-a@laptop .*--force/.test(error.message),
    );
    assert.deepEqual(cluster.list(), before);
  });

  it('removes exactly what install created; an expired session does not hold it back', async () => {
    const cluster = await clusterWith([liveLease('team-a', 'old', new Date(Date.now() - 3600_000))]);
    const result = await uninstall(cluster);
    assert.equal(result.removed.length, installed.length);
    assert.deepEqual(
      cluster
        .list()
        .map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`)
        .sort(),
      ['Lease team-a/detour-old', 'Service team-a/orders', 'Service team-b/detour-agent'],
    );
  });

  it('--force ends the live sessions (their Leases) and removes the agent', async () => {
    const cluster = await clusterWith([liveLease('team-a', 'dev-a')]);
    const result = await uninstall(cluster, true);
    assert.deepEqual(result.endedSessions, ['dev-a']);
    assert.ok(!cluster.list().some((o) => o.kind === 'Lease'));
    assert.ok(
      !cluster.list().some((o) => o.metadata.namespace === 'team-a' && o.metadata.name === 'detour-agent'),
    );
  });

  it('waits for the agent pods and names those that stay', async () => {
    const pod: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'detour-agent-abc', namespace: 'team-a', labels: { ...INSTALL_LABELS } },
    };
    const cluster = await clusterWith([pod]);
    await assert.rejects(uninstall(cluster, false, 300), /still there after .*Pod team-a\/detour-agent-abc/);
  });
});

describe('an ephemeral agent', () => {
  const lease = { name: 'detour-s1', namespace: 'team-a', uid: 'lease-uid' };
  const objects = ephemeralAgentObjects({
    namespace: 'team-a',
    image: 'detour/agent:1',
    sessionId: 's1',
    lease,
  });
  const installed = agentManifests({ namespace: 'team-a', image: 'detour/agent:1' });

  it('is the installed pod template as a Pod: same security context, own ServiceAccount', () => {
    const pod = byKind(objects, 'Pod') as unknown as { spec: PodSpec; metadata: KubeObject['metadata'] };
    const template = templateOf(byKind(installed, 'Deployment'));
    assert.deepEqual(pod.spec.securityContext, template.spec.securityContext);
    assert.deepEqual(
      pod.spec.containers.map((c) => c.securityContext),
      template.spec.containers.map((c) => c.securityContext),
    );
    assert.equal(pod.spec.serviceAccountName, 'detour-agent-s1');
    assert.equal(pod.metadata.labels?.['sidecar.istio.io/inject'], 'true');
  });

  it('has no disruption budget: one pod, gone with its session', () => {
    assert.equal(objects.filter((o) => o.kind === 'PodDisruptionBudget').length, 0);
  });

  it('is owned by the Lease, selected by its own Service only', () => {
    for (const object of objects) {
      assert.equal(object.metadata.name, 'detour-agent-s1');
      assert.deepEqual(object.metadata.ownerReferences, [
        { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'detour-s1', uid: 'lease-uid' },
      ]);
    }
    assert.equal(objects.filter((o) => o.kind === 'Service').length, 1, 'one pod: no peers Service');
    const env = (byKind(objects, 'Pod').spec as PodSpec).containers.flatMap((c) => c.env ?? []);
    assert.ok(
      env.some((e) => e.name === 'DETOUR_POD_IP'),
      'the template env is kept',
    );
    assert.ok(!env.some((e) => e.name === 'DETOUR_PEER_HOST'), 'nor names the peers Service');
    const pod = byKind(objects, 'Pod');
    const selector = (byKind(objects, 'Service').spec as { selector: Record<string, string> }).selector;
    assert.ok(Object.entries(selector).every(([k, v]) => pod.metadata.labels?.[k] === v));
    assert.equal(pod.metadata.labels?.['app.kubernetes.io/name'], EPHEMERAL_AGENT_LABEL_VALUE);
    assert.deepEqual(ephemeralAgentService('s1'), { name: 'detour-agent-s1', port: 8080, selector });
    const installedSelector = (byKind(installed, 'Service').spec as { selector: Record<string, string> })
      .selector;
    assert.ok(!Object.entries(installedSelector).every(([k, v]) => pod.metadata.labels?.[k] === v));
  });

  it('gets a Role a developer may grant: no writes to Services', () => {
    const role = byKind(objects, 'Role') as unknown as {
      rules: Array<{ resources: string[]; verbs: string[] }>;
    };
    assert.deepEqual(role.rules.find((r) => r.resources.includes('services'))?.verbs, ['get', 'list']);
    const binding = byKind(objects, 'RoleBinding') as unknown as { roleRef: { name: string } };
    assert.equal(binding.roleRef.name, 'detour-agent-s1');
  });
});

describe('the RBAC a session needs', () => {
  it('names the shipped role that grants each verb', () => {
    const needed = sessionPermissions('team-a', 'istio');
    assert.ok(
      needed.some((a) => a.resource === 'pods' && a.subresource === 'portforward' && a.verb === 'get'),
    );
    assert.ok(needed.some((a) => a.resource === 'virtualservices' && a.verb === 'update'));
    for (const attributes of needed) assert.equal(roleGranting(attributes)?.name, 'detour-developer');
    assert.equal(
      roleGranting({ verb: 'update', group: '', resource: 'services', namespace: 'team-a' })?.name,
      'detour-developer-no-mesh',
    );
    assert.equal(
      roleGranting({ verb: 'create', group: '', resource: 'pods', namespace: 'team-a' })?.name,
      'detour-ephemeral-agent',
    );
  });
});
