// detour install / doctor / uninstall and --agent ephemeral on the local cluster with Istio, in a
// namespace of their own (istio-injection=enabled, like staging) holding one app, `orders` from the
// sample image. As admin: `detour install` (twice: the second writes nothing). As the developer:
// `detour doctor` green, a steal through that agent (from the caller pod in staging), doctor as an
// identity missing one verb (admin impersonating a user bound to detour-developer without
// pods/portforward). As admin: `detour uninstall` refusing while a session is live, then --force,
// and no object left (by label and by name); doctor then names the missing agent and the fix, and
// against a stand-in agent of tunnel protocol v2, both versions and the fix.
// Then `--agent ephemeral` as the developer (bound to detour-ephemeral-agent in the namespace):
// the session works through its own agent pod, which is gone after the session ends, and after a
// SIGKILLed CLI (the agent ends the Lease, the garbage collector removes what it owned). Last,
// install and uninstall as an identity bound only to the optional detour-installer role.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildLease } from '@detour/mesh-adapters';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { kubeconfigPath, kubectl } from '../cluster/cluster.ts';
import { applyManifest } from '../cluster/istio/istio.ts';
import { archiveDigest, meshImages } from '../cluster/mesh.ts';
import { repoRoot } from '../cluster/paths.ts';
import { agentImage, deployment, list, service, serviceAccount } from '../cluster/sample/sample.ts';
import { waitFor } from '../cluster/wait.ts';
import { admin, createAppNamespace, detourWith, ordersUrl, stealIn } from './app-namespace.ts';
import { callerGet, interrupt, useSample } from './support.ts';

const namespace = `detour-install-${process.pid}`;
const limitedUser = 'detour-limited';
const limitedKubeconfig = join(tmpdir(), `kubeconfig-${limitedUser}-${process.pid}.yaml`);
const installerUser = 'detour-installer-user';
const installerKubeconfig = join(tmpdir(), `kubeconfig-${installerUser}-${process.pid}.yaml`);
const ordersAt = ordersUrl(namespace);
const steal = (dev: string, flags: string[]) => stealIn(namespace, dev, flags);

/** A kubeconfig of admin impersonating `user`: an identity with only the grants the test binds to it. */
function writeImpersonating(path: string, user: string): void {
  const config = parseAllDocuments(readFileSync(kubeconfigPath('admin'), 'utf8'))[0]?.toJS() as {
    users: Array<{ user: Record<string, string> }>;
  };
  for (const entry of config.users) entry.user.as = user;
  writeFileSync(path, stringify(config), { mode: 0o600 });
}

/** Names of the objects of `kinds` in the namespace, optionally by label selector. */
async function objectNames(kinds: string, selector?: string): Promise<string[]> {
  const out = await admin([
    'get',
    kinds,
    '-n',
    namespace,
    '-o',
    'name',
    ...(selector ? ['-l', selector] : []),
  ]);
  return out.split('\n').filter(Boolean);
}

/** The developer's ClusterRole less one rule (pods/portforward), bound to a user admin impersonates. */
function limitedIdentity(): string {
  const developer = parse(
    readFileSync(join(repoRoot, 'manifests', 'rbac', 'detour-developer.yaml'), 'utf8'),
  ) as { rules: Array<{ resources: string[] }> };
  const role = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: `${limitedUser}-${process.pid}` },
    rules: developer.rules.filter((rule) => !rule.resources.includes('pods/portforward')),
  };
  const binding = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: `${limitedUser}-${process.pid}` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: limitedUser }],
  };
  writeImpersonating(limitedKubeconfig, limitedUser);
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [role, binding] });
}

describe('detour install, doctor, uninstall and --agent ephemeral', () => {
  const developer = kubeconfigPath('developer');
  const adminConfig = kubeconfigPath('admin');
  let limitedObjects = '';

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    await createAppNamespace(namespace);
    limitedObjects = limitedIdentity();
    await applyManifest(limitedObjects);
  });

  after(async () => {
    await kubectl('admin', ['delete', '--ignore-not-found', '-f', '-'], limitedObjects);
    for (const file of [limitedKubeconfig, installerKubeconfig]) rmSync(file, { force: true });
    await kubectl('admin', ['delete', 'namespace', namespace, '--ignore-not-found', '--wait=false']);
  });

  it('installs the agent as admin: rollout, version and mesh identity; a second install writes nothing', async () => {
    const first = await detourWith(
      ['install', '-n', namespace, '--image', agentImage, '--json'],
      adminConfig,
    );
    assert.equal(first.code, 0, first.stderr);
    const done = first.events.find((e) => e.event === 'install.done');
    assert.ok(done, first.stderr);
    assert.equal(done.sidecar, true, JSON.stringify(done));
    assert.equal(done.spiffe, `spiffe://cluster.local/ns/${namespace}/sa/detour-agent`);
    assert.equal(done.image, agentImage);
    assert.ok(
      first.events.some((e) => e.event === 'install.rollout'),
      'the rollout is reported',
    );
    const again = await detourWith(
      ['install', '-n', namespace, '--image', agentImage, '--json'],
      adminConfig,
    );
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      new Set(again.events.filter((e) => e.event === 'install.applied').map((e) => e.outcome)),
      new Set(['unchanged']),
    );
  });

  it('doctor is green as the developer', async () => {
    const doctor = await detourWith(['doctor', '-n', namespace, '--json'], developer);
    const report = JSON.parse(doctor.stdout) as {
      ok: boolean;
      checks: Array<{ name: string; status: string }>;
    };
    assert.equal(doctor.code, 0, doctor.stdout);
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.checks.map((c) => c.name),
      ['context', 'mesh', 'rbac', 'agent', 'port-forward', 'tunnel', 'route-probe'],
    );
    for (const c of report.checks) assert.notEqual(c.status, 'fail', JSON.stringify(c));
    const text = await detourWith(['doctor', '-n', namespace], developer);
    assert.match(text.stdout, /^ok {4}route-probe: a request from the agent .* came back to it/m);
  });

  it('a steal through the installed agent', async () => {
    const session = await steal('inst-a', []);
    try {
      const other = await callerGet(ordersAt, {});
      assert.match(String(other.body.pod), /^orders-/, JSON.stringify(other.body));
    } finally {
      interrupt(session);
      await session.exited;
    }
  });

  it('doctor as an identity missing one verb names it and the role to bind', async () => {
    const doctor = await detourWith(['doctor', '-n', namespace, '--json'], limitedKubeconfig);
    assert.equal(doctor.code, 1, doctor.stdout);
    const checks = (
      JSON.parse(doctor.stdout) as {
        checks: Array<{ name: string; status: string; detail: string; fix?: string }>;
      }
    ).checks;
    const rbac = checks.find((c) => c.name === 'rbac');
    assert.equal(rbac?.status, 'fail');
    assert.match(rbac?.detail ?? '', new RegExp(`not allowed to: get pods/portforward in ${namespace}$`));
    assert.match(rbac?.fix ?? '', /manifests\/rbac\/detour-developer\.yaml.*--clusterrole=detour-developer/);
    const forward = checks.find((c) => c.name === 'port-forward');
    assert.equal(forward?.status, 'fail', JSON.stringify(checks));
    assert.match(forward?.detail ?? '', /pods\/portforward/);
  });

  it('uninstall refuses while a session is live, naming it; --force ends it and leaves nothing behind', async () => {
    const sessionId = `live-${process.pid}`;
    const lease = buildLease(
      {
        sessionId,
        target: { namespace, host: `orders.${namespace}.svc.cluster.local`, port: 8080 },
        mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: sessionId } } } },
        agent: { name: 'detour-agent', namespace, port: 8080 },
        holder: 'someone@laptop',
        lease: { name: `detour-${sessionId}`, namespace },
      },
      new Date(),
      { durationSeconds: 300 },
    );
    await admin(['create', '-f', '-'], JSON.stringify(lease));
    const refused = await detourWith(['uninstall', '-n', namespace], adminConfig);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${sessionId} of someone@laptop.*--force`));
    assert.ok((await objectNames('deployments')).includes('deployment.apps/detour-agent'), 'nothing removed');

    const forced = await detourWith(['uninstall', '-n', namespace, '--force'], adminConfig);
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(
      await objectNames(
        'serviceaccounts,roles,rolebindings,deployments,poddisruptionbudgets,replicasets,pods,services,leases',
        'app.kubernetes.io/managed-by=detour-install',
      ),
      [],
    );
    for (const kind of [
      'serviceaccount',
      'role',
      'rolebinding',
      'deployment',
      'poddisruptionbudget',
      'service',
    ]) {
      const found = await kubectl('admin', ['get', kind, 'detour-agent', '-n', namespace]);
      assert.notEqual(found.code, 0, `${kind} detour-agent is gone`);
    }
    assert.deepEqual(await objectNames('pods', 'app.kubernetes.io/name=detour-agent'), []);
    assert.deepEqual(await objectNames('leases'), [], 'the live session was ended');
  });

  it('doctor against a namespace with no agent names it and the fix', async () => {
    const doctor = await detourWith(['doctor', '-n', namespace], developer);
    assert.equal(doctor.code, 1, doctor.stdout);
    assert.match(
      doctor.stdout,
      new RegExp(
        `^FAIL  agent: no detour agent in ${namespace} .*fix: an admin runs \`detour install -n ${namespace}\`.*--agent ephemeral`,
        'm',
      ),
    );
    assert.match(doctor.stdout, /--clusterrole=detour-ephemeral-agent --user=detour-dev/);
    assert.doesNotMatch(doctor.stdout, /detour-developer-no-mesh/, 'the fix names the role made for it');
    assert.match(doctor.stdout, /^skip {2}port-forward/m);
  });

  it('doctor against an agent of another tunnel protocol names both versions and the fix', async () => {
    // A stand-in for an agent of a later release: on the tunnel port it refuses the CLI's hello as
    // a v2 agent does (a goaway with its version and release), written by hand with node:net.
    const refuse = `require('node:net').createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => {
        const p = Buffer.from(JSON.stringify({ code: 'DETOUR_TUNNEL_VERSION', message: 'v2 only', version: 2, release: '9.9.9' }));
        const h = Buffer.alloc(10);
        h.writeUInt32BE(p.length, 0); h.writeUInt8(9, 4); h.writeUInt8(0, 5); h.writeUInt32BE(0, 6);
        s.end(Buffer.concat([h, p]));
      });
    }).listen(7700, '127.0.0.1');`;
    const standInDeployment = deployment(
      'detour-agent',
      'v1',
      archiveDigest(meshImages.sample),
      {},
      namespace,
    );
    const template = (
      standInDeployment.spec as { template: { spec: { containers: Array<{ args: string[] }> } } }
    ).template;
    for (const container of template.spec.containers) container.args = ['-e', refuse];
    const standIn = list([
      serviceAccount('detour-agent', namespace),
      service('detour-agent', namespace),
      standInDeployment,
    ]);
    await applyManifest(standIn);
    try {
      await admin(['-n', namespace, 'rollout', 'status', 'deployment/detour-agent', '--timeout=120s']);
      const doctor = await detourWith(['doctor', '-n', namespace], developer);
      assert.equal(doctor.code, 1, doctor.stdout);
      assert.match(doctor.stdout, /^ok {4}port-forward: /m);
      assert.match(
        doctor.stdout,
        new RegExp(
          `^FAIL  tunnel: the agent speaks tunnel protocol v2 \\(detour 9\\.9\\.9\\) but this CLI speaks v1 .* — fix: .*detour install -n ${namespace}`,
          'm',
        ),
      );
      assert.match(doctor.stdout, /^skip {2}route-probe/m);
    } finally {
      await kubectl('admin', ['delete', '-f', '-', '--wait=true', '--timeout=60s'], standIn);
    }
  });

  describe('--agent ephemeral (no agent installed)', () => {
    before(async () => {
      await admin([
        'create',
        'rolebinding',
        'detour-ephemeral-agent-detour-dev',
        '-n',
        namespace,
        '--clusterrole=detour-ephemeral-agent',
        '--user=detour-dev',
      ]);
    });

    const flags = (session: string) => [
      '--agent',
      'ephemeral',
      '--agent-image',
      agentImage,
      '--session',
      session,
      '--lease-seconds',
      '10',
    ];
    const ephemeralObjects = (session: string) =>
      objectNames('pods,services,serviceaccounts,roles,rolebindings', `detour.dev/session=${session}`);

    it('serves the session through its own agent pod, gone when the session ends', async () => {
      const session = await steal('eph-a', flags('eph-a'));
      const ready = session.jsonLines('stderr').find((line) => line.event === 'agent.ephemeral.ready');
      assert.ok(ready, session.tail(30));
      console.log(`# ephemeral agent: create -> pod ready ${ready.ms} ms (goal 8000 ms)`);
      assert.ok((await ephemeralObjects('eph-a')).includes('pod/detour-agent-eph-a'));
      type Container = { name: string; securityContext?: Record<string, unknown> };
      const agentPod = JSON.parse(
        await admin(['get', 'pod', 'detour-agent-eph-a', '-n', namespace, '-o', 'json']),
      ) as {
        spec: {
          containers: Container[];
          initContainers?: Container[];
          securityContext?: Record<string, unknown>;
        };
      };
      const agent = agentPod.spec.containers.find((c) => c.name === 'agent');
      assert.equal(agent?.securityContext?.readOnlyRootFilesystem, true);
      assert.equal(agentPod.spec.securityContext?.runAsNonRoot, true);
      assert.ok(
        [...(agentPod.spec.initContainers ?? []), ...agentPod.spec.containers].some(
          (c) => c.name === 'istio-proxy',
        ),
        'the ephemeral agent is mesh-injected',
      );
      interrupt(session);
      await session.exited;
      await waitFor(
        'the ephemeral agent to be gone',
        async () => (await ephemeralObjects('eph-a')).length === 0,
        {
          timeoutMs: 60_000,
          intervalMs: 500,
        },
      );
    });

    it('after a SIGKILLed CLI the agent ends the Lease and garbage collection removes the agent', async () => {
      const session = await steal('eph-b', flags('eph-b'));
      session.signal('SIGKILL');
      await session.exited;
      const killed = Date.now();
      await waitFor(
        'the killed session’s agent to be gone',
        async () => (await ephemeralObjects('eph-b')).length === 0,
        {
          timeoutMs: 120_000,
          intervalMs: 1000,
        },
      );
      console.log(`# CLI SIGKILLed -> ephemeral agent gone: ${Date.now() - killed} ms`);
      assert.deepEqual(await objectNames('leases'), []);
      await waitFor(
        'x-dev: eph-b to reach the real orders again (the route reverted)',
        async () => /^orders-/.test(String((await callerGet(ordersAt, { 'x-dev': 'eph-b' })).body.pod)),
        { timeoutMs: 30_000, intervalMs: 500 },
      );
    });

    it('a laptop that slept through its Lease: on waking, a new Lease and a new agent, served locally again', async () => {
      const session = await steal('eph-c', flags('eph-c'));
      const firstAgent = (
        await admin(['get', 'pod', 'detour-agent-eph-c', '-n', namespace, '-o', 'jsonpath={.metadata.uid}'])
      ).trim();
      session.signal('SIGSTOP');
      try {
        await waitFor(
          'the agent to end the sleeping session’s Lease, and garbage collection to remove the agent',
          async () =>
            (await ephemeralObjects('eph-c')).length === 0 && (await objectNames('leases')).length === 0,
          { timeoutMs: 120_000, intervalMs: 1000 },
        );
      } finally {
        session.signal('SIGCONT');
      }
      const woke = Date.now();
      await waitFor(
        'x-dev: eph-c to reach the local app again',
        async () => (await callerGet(ordersAt, { 'x-dev': 'eph-c' })).body.pod === 'laptop',
        { timeoutMs: 90_000, intervalMs: 500 },
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${session.tail(20)}`);
      });
      console.log(`# awake -> a new ephemeral agent, served locally again: ${Date.now() - woke} ms`);
      const secondAgent = (
        await admin(['get', 'pod', 'detour-agent-eph-c', '-n', namespace, '-o', 'jsonpath={.metadata.uid}'])
      ).trim();
      assert.notEqual(secondAgent, firstAgent, 'a new agent pod');
      assert.ok(
        session.jsonLines('stderr').some((line) => line.event === 'session.resumed'),
        session.tail(20),
      );
      interrupt(session);
      await session.exited;
      await waitFor(
        'the second agent to be gone',
        async () => (await ephemeralObjects('eph-c')).length === 0,
        {
          timeoutMs: 60_000,
          intervalMs: 500,
        },
      );
      assert.deepEqual(await objectNames('leases'), []);
    });
  });

  it('the optional installer role is enough: install and uninstall as an identity bound only to it', async () => {
    await admin([
      'create',
      'rolebinding',
      'detour-installer-test',
      '-n',
      namespace,
      '--clusterrole=detour-installer',
      `--user=${installerUser}`,
    ]);
    writeImpersonating(installerKubeconfig, installerUser);
    const install = await detourWith(
      ['install', '-n', namespace, '--image', agentImage, '--json'],
      installerKubeconfig,
    );
    assert.equal(install.code, 0, install.stderr);
    assert.ok(
      install.events.some((e) => e.event === 'install.done' && e.sidecar === true),
      install.stderr,
    );
    const uninstall = await detourWith(['uninstall', '-n', namespace, '--force'], installerKubeconfig);
    assert.equal(uninstall.code, 0, uninstall.stderr);
    assert.deepEqual(
      await objectNames(
        'all,serviceaccounts,roles,rolebindings',
        'app.kubernetes.io/managed-by=detour-install',
      ),
      [],
    );
  });
});
