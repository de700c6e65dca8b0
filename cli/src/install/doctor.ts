import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import {
  adapterFor,
  buildLease,
  type ClusterClient,
  detectMesh,
  type KubeObject,
  type kubeClient,
  type MeshKind,
  type ResourceAttributes,
  refOf,
  requiredPermissions,
  type SessionIntent,
  tokenSha256,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';
import {
  RouteProbeResult,
  TunnelCode,
  TunnelConnection,
  type TunnelVersionError,
} from '@detour/router/tunnel/index';
import { AuthenticationV1Api, type KubeConfig, VersionApi } from '@kubernetes/client-node';
import { type AgentPortForward, forwardToAgent } from '../kube/agent-port-forward.ts';
import { discoverMesh } from '../kube/mesh-discovery.ts';
import { requireNamespace } from '../kube/namespace.ts';
import { agentVersionFix, cliVersion, versionInfo } from '../version.ts';
import { AGENT_NAME_LABEL } from './agent-manifests.ts';
import { isPodReady, listPods, meshIdentity, podProblem } from './installer.ts';
import {
  bindCommand,
  describeAttributes,
  roleGranting,
  type ShippedRole,
  shippedRoles,
} from './rbac-manifests.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

type Client = ReturnType<typeof kubeClient>;

function check(name: string, status: CheckStatus, detail: string, fix?: string): Check {
  return { name, status, detail, ...(fix ? { fix } : {}) };
}

function attributeKey(a: ResourceAttributes): string {
  return [a.verb, a.group, a.resource, a.subresource ?? '', a.namespace ?? ''].join('|');
}

/**
 * Every verb a session in `namespace` needs with the mesh `mesh`: what the CLI reads to resolve the
 * target and its environment, the port-forward to the agent, and what the mesh adapter lists and writes.
 */
export function sessionPermissions(namespace: string, mesh: MeshKind): ResourceAttributes[] {
  const intent: SessionIntent = {
    sessionId: 'doctor',
    target: { namespace, host: `doctor.${namespace}.svc.cluster.local`, port: 8080 },
    mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: 'doctor' } } } },
    agent: { name: 'detour-agent', namespace, port: 8080 },
    holder: 'doctor',
    lease: { name: 'detour-doctor', namespace },
  };
  const inNamespace = (verb: string, group: string, resource: string, subresource?: string) => ({
    verb,
    group,
    resource,
    namespace,
    ...(subresource ? { subresource } : {}),
  });
  const all: ResourceAttributes[] = [
    { verb: 'get', group: '', resource: 'namespaces' },
    inNamespace('list', '', 'services'),
    inNamespace('get', '', 'services'),
    inNamespace('list', '', 'pods'),
    inNamespace('list', 'apps', 'deployments'),
    inNamespace('get', '', 'configmaps'),
    // client-node's port-forward is a WebSocket upgrade: an HTTP GET.
    inNamespace('get', '', 'pods', 'portforward'),
    ...requiredPermissions(adapterFor(mesh), intent),
  ];
  return [...new Map(all.map((a) => [attributeKey(a), a])).values()];
}

/** What `--agent ephemeral` creates: the verbs of manifests/rbac/detour-ephemeral-agent.yaml. */
export function ephemeralPermissions(namespace: string): ResourceAttributes[] {
  return [
    ['', 'pods'],
    ['', 'services'],
    ['', 'serviceaccounts'],
    ['rbac.authorization.k8s.io', 'roles'],
    ['rbac.authorization.k8s.io', 'rolebindings'],
  ].flatMap(([group = '', resource = '']) =>
    ['create', 'delete'].map((verb) => ({ verb, group, resource, namespace })),
  );
}

async function missingOf(client: Client, attributes: readonly ResourceAttributes[]) {
  const answers = await Promise.all(
    attributes.map(async (a) => ({ a, allowed: (await client.selfSubjectAccessReview(a)).allowed })),
  );
  return answers.filter((answer) => !answer.allowed).map((answer) => answer.a);
}

/** Each missing verb, and for each shipped role that grants some of them the command that binds it. */
function rbacFix(
  missing: readonly ResourceAttributes[],
  user: string,
  namespace: string,
  roles: readonly ShippedRole[] = shippedRoles(),
): string {
  const needed = new Map<string, { role: ShippedRole; clusterWide: boolean }>();
  const orphans: string[] = [];
  for (const attributes of missing) {
    const role = roleGranting(attributes, roles);
    if (!role) {
      orphans.push(describeAttributes(attributes));
      continue;
    }
    const entry = needed.get(role.name) ?? { role, clusterWide: false };
    entry.clusterWide ||= attributes.namespace === undefined;
    needed.set(role.name, entry);
  }
  return [
    ...[...needed.values()].map(
      ({ role, clusterWide }) =>
        `bind ${role.file} to ${user}: ${bindCommand(role, user, clusterWide ? undefined : namespace)}`,
    ),
    ...(orphans.length ? [`grant ${orphans.join(', ')} (no role in manifests/rbac has it)`] : []),
  ].join('; ');
}

async function whoAmI(kc: KubeConfig): Promise<string> {
  const review = await kc
    .makeApiClient(AuthenticationV1Api)
    .createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } })
    .catch(() => undefined);
  return review?.status?.userInfo?.username ?? kc.getCurrentUser()?.name ?? '<you>';
}

export interface DoctorOptions {
  kc: KubeConfig;
  client: Client;
  namespace: string;
  agentService: string;
  /** Called as each check ends, so a slow one shows what came before it. */
  onCheck?: (check: Check) => void;
}

/**
 * `detour doctor`: each thing a session needs, checked in the order a session needs it, each with
 * the fix when it fails. A failed step skips the checks that depend on it.
 */
export async function runDoctor(options: DoctorOptions): Promise<Check[]> {
  const { kc, client, namespace, agentService } = options;
  const checks: Check[] = [];
  const add = (c: Check) => {
    checks.push(c);
    options.onCheck?.(c);
    return c;
  };
  const skipRest = (names: string[], why: string) => {
    for (const name of names) add(check(name, 'skip', `skipped: ${why}`));
    return checks;
  };
  const versions = versionInfo();

  const context = kc.getCurrentContext();
  const server = kc.getCurrentCluster()?.server ?? '?';
  try {
    const version = await kc.makeApiClient(VersionApi).getCode();
    add(check('context', 'ok', `context ${context} at ${server} answers: Kubernetes ${version.gitVersion}`));
  } catch (error) {
    add(
      check(
        'context',
        'fail',
        `context ${context} at ${server} does not answer: ${errorText(error)}`,
        'check KUBECONFIG and `kubectl config current-context`, and that the cluster (VPN, tunnel) is reachable from here',
      ),
    );
    return skipRest(
      ['mesh', 'rbac', 'agent', 'port-forward', 'tunnel', 'route-probe'],
      'the cluster does not answer',
    );
  }

  try {
    await requireNamespace(kc, namespace);
  } catch (error) {
    add(check('mesh', 'fail', (error as Error).message));
    return skipRest(['rbac', 'agent', 'port-forward', 'tunnel', 'route-probe'], `no namespace ${namespace}`);
  }

  let mesh: MeshKind = 'service';
  try {
    const detection = detectMesh(await discoverMesh(kc, namespace));
    mesh = detection.mesh;
    const uninjected = mesh === 'service' && /Istio is installed/.test(detection.reason);
    add(
      check(
        'mesh',
        uninjected ? 'warn' : 'ok',
        `${detection.mesh}: ${detection.reason}`,
        uninjected
          ? `to route through Istio: kubectl label namespace ${namespace} istio-injection=enabled, then restart its pods`
          : undefined,
      ),
    );
  } catch (error) {
    add(
      check(
        'mesh',
        'fail',
        `cannot read namespace ${namespace}: ${(error as Error).message}`,
        `check the namespace (kubectl get namespace ${namespace}) and that you may get namespaces (manifests/rbac/detour-developer.yaml)`,
      ),
    );
  }

  const user = await whoAmI(kc);
  const missing = await missingOf(client, sessionPermissions(namespace, mesh));
  add(
    missing.length === 0
      ? check('rbac', 'ok', `${user} may do all a session in ${namespace} needs (mesh ${mesh})`)
      : check(
          'rbac',
          'fail',
          `${user} is not allowed to: ${missing.map(describeAttributes).join(', ')}`,
          rbacFix(missing, user, namespace),
        ),
  );

  const service = (await client.list({ ...QUERIES.services, namespace })).find(
    (s) => s.metadata.name === agentService,
  );
  if (!service) {
    const ephemeralMissing = await missingOf(client, ephemeralPermissions(namespace));
    add(
      check(
        'agent',
        'fail',
        `no detour agent in ${namespace} (no Service ${agentService})${ephemeralMissing.length === 0 ? '; --agent ephemeral is allowed for you' : ''}`,
        `an admin runs \`detour install -n ${namespace}\` (its role: manifests/rbac/detour-installer.yaml), or start sessions with --agent ephemeral${
          ephemeralMissing.length
            ? ` (${rbacFix(
                ephemeralMissing,
                user,
                namespace,
                shippedRoles().filter((role) => role.name === 'detour-ephemeral-agent'),
              )})`
            : ''
        }`,
      ),
    );
    return skipRest(['port-forward', 'tunnel', 'route-probe'], 'no agent');
  }
  const selector = (service.spec as { selector?: Record<string, string> } | undefined)?.selector ?? {};
  const pods = await listPods(client, namespace, selector);
  const ready = pods.filter(isPodReady);
  const images = [
    ...new Set(
      pods.flatMap((pod) =>
        ((pod.spec as { containers?: Array<{ name: string; image: string }> }).containers ?? [])
          .filter((c) => c.name === 'agent')
          .map((c) => c.image),
      ),
    ),
  ];
  const pod = ready[0];
  if (!pod) {
    add(
      check(
        'agent',
        'fail',
        `Service ${namespace}/${agentService} has no ready pod${pods.length ? `: ${pods.map((p) => podProblem(p).text).join(', ')}` : ''}`,
        `kubectl describe pods -n ${namespace} -l ${Object.entries(selector)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}; reinstall with \`detour install -n ${namespace}\``,
      ),
    );
    return skipRest(['port-forward', 'tunnel', 'route-probe'], 'no ready agent pod');
  }
  const identity = meshIdentity(pod);
  const imageDiffers = !images.includes(versions.agentImage);
  const noSidecar = mesh !== 'service' && !identity.sidecar;
  add(
    check(
      'agent',
      noSidecar ? 'fail' : imageDiffers ? 'warn' : 'ok',
      `${ready.length} of ${pods.length} pod(s) ready, image ${images.join(', ')}${identity.sidecar ? `, sidecar injected, mesh identity ${identity.spiffe}` : ', no sidecar'}${imageDiffers ? ` (this CLI ${versions.version} expects ${versions.agentImage})` : ''}`,
      noSidecar
        ? `the mesh routes to the agent only through its sidecar: kubectl label namespace ${namespace} istio-injection=enabled && kubectl rollout restart -n ${namespace} deployment/${agentService}`
        : imageDiffers
          ? `if sessions fail, install the agent of this release: detour install -n ${namespace} --image ${versions.agentImage}`
          : undefined,
    ),
  );

  await checkTunnel(
    { client, namespace, agentService, forward: () => forwardToAgent(kc, namespace, agentService) },
    pod,
    service,
    add,
  );
  return checks;
}

/**
 * Port-forward, tunnel handshake and a route probe, as a session does them: under a short Lease of
 * the doctor's own (the agent admits a CLI by its Lease), deleted afterwards.
 */
export async function checkTunnel(
  options: {
    client: ClusterClient;
    namespace: string;
    agentService: string;
    forward: () => Promise<Omit<AgentPortForward, 'readyPods'>>;
  },
  pod: KubeObject,
  service: KubeObject,
  add: (check: Check) => void,
): Promise<void> {
  const { client, namespace, agentService } = options;
  const versions = versionInfo();
  const token = randomBytes(24).toString('base64url');
  const sessionId = `doctor-${randomBytes(3).toString('hex')}`;
  const port = (service.spec as { ports?: Array<{ port: number }> }).ports?.[0]?.port ?? 8080;
  const host = `${agentService}.${namespace}.svc.cluster.local`;
  let lease: KubeObject | undefined;
  try {
    lease = await client.create(
      buildLease(
        {
          sessionId,
          target: { namespace, host, port },
          mode: { kind: 'steal', filter: { headers: { 'x-detour-doctor': { exact: sessionId } } } },
          agent: { name: agentService, namespace, port },
          holder: `${userInfo().username}@${hostname()} (detour doctor)`,
          lease: { name: `detour-${sessionId}`, namespace },
        },
        new Date(),
        { durationSeconds: 30, tokenSha256: tokenSha256(token) },
      ),
    );
  } catch (error) {
    add(
      check(
        'port-forward',
        'fail',
        `cannot create the doctor's session Lease: ${(error as Error).message}`,
        'sessions need create on leases (see the rbac check)',
      ),
    );
    for (const name of ['tunnel', 'route-probe']) add(check(name, 'skip', 'skipped: no Lease'));
    return;
  }
  const forward = await options.forward();
  let tunnel: TunnelConnection | undefined;
  try {
    try {
      tunnel = await TunnelConnection.connect(
        await forward.dial(),
        { token, client: `${userInfo().username}@${hostname()} (detour doctor)` },
        { release: cliVersion, versionFix: (agent) => agentVersionFix(agent, namespace) },
      );
    } catch (error) {
      const forwardError = forward.lastError();
      if (forwardError) {
        add(
          check(
            'port-forward',
            'fail',
            forwardError.message,
            'see the rbac check, and that the agent pod runs',
          ),
        );
        add(check('tunnel', 'skip', 'skipped: no port-forward'));
      } else {
        add(
          check(
            'port-forward',
            'ok',
            `${forward.address} → pod ${pod.metadata.name} port 7700 through the apiserver`,
          ),
        );
        const code = (error as { code?: string }).code;
        add(
          check(
            'tunnel',
            'fail',
            (error as Error).message,
            code === TunnelCode.version
              ? agentVersionFix((error as TunnelVersionError).peer, namespace)
              : code === TunnelCode.auth
                ? `the agent did not admit a live session Lease: it must read Leases in ${namespace} (manifests/agent/role.yaml); reinstall with detour install -n ${namespace}`
                : `see kubectl logs -n ${namespace} ${pod.metadata.name} -c agent`,
          ),
        );
      }
      add(check('route-probe', 'skip', 'skipped: no tunnel'));
      return;
    }
    add(
      check(
        'port-forward',
        'ok',
        `${forward.address} → pod ${pod.metadata.name} port 7700 through the apiserver`,
      ),
    );
    add(
      check(
        'tunnel',
        'ok',
        `agent ${tunnel.peerName}${tunnel.peerRelease ? ` (detour ${tunnel.peerRelease})` : ''} accepted the hello: tunnel protocol v${versions.tunnelProtocol}, the same as this CLI ${versions.version}`,
      ),
    );
    add(await probeRoute(tunnel, `http://${host}:${port}/`, namespace));
  } finally {
    tunnel?.close();
    await forward.close();
    if (lease) await client.delete(refOf(lease), { uid: lease.metadata.uid }).catch(() => {});
  }
}

/** The agent sends a request through its own sidecar to its own Service: does the mesh deliver it back? */
async function probeRoute(tunnel: TunnelConnection, url: string, namespace: string): Promise<Check> {
  const began = Date.now();
  try {
    const result = RouteProbeResult.parse(await tunnel.request('route.probe', { url, headers: {} }));
    return result.live
      ? check(
          'route-probe',
          'ok',
          `a request from the agent to ${url} came back to it through the mesh in ${Date.now() - began} ms`,
        )
      : check(
          'route-probe',
          'fail',
          `a request from the agent to ${url} did not come back to it: ${result.detail}`,
          `check the agent's sidecar (kubectl logs -n ${namespace} -l ${AGENT_NAME_LABEL}=detour-agent -c istio-proxy) and the AuthorizationPolicies and PeerAuthentication of ${namespace}`,
        );
  } catch (error) {
    const code = (error as { code?: string }).code;
    return check(
      'route-probe',
      code === 'DETOUR_UNKNOWN_METHOD' ? 'warn' : 'fail',
      `the agent could not probe: ${(error as Error).message}`,
      code === 'DETOUR_UNKNOWN_METHOD'
        ? `the agent is of an older release: detour install -n ${namespace}`
        : undefined,
    );
  }
}

/** An error's message with its cause's code (fetch failed: ECONNREFUSED). */
export function errorText(error: unknown): string {
  const { message, cause } = error as Error & { cause?: Error & { code?: string } };
  return cause ? `${message} (${cause.code ?? cause.message})` : message;
}

/** `ok    context: ...` and, for a failure, the fix on the same line. */
export function formatCheck(c: Check): string {
  const mark = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' }[c.status];
  return `${mark}  ${c.name}: ${c.detail}${c.fix ? ` — fix: ${c.fix}` : ''}`;
}
