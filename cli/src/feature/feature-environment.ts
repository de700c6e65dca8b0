import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  adapterFor,
  allAdapters,
  detectMesh,
  FEATURE_RESPONSE_HEADER,
  type FeatureEnvironment,
  type FeatureService,
  featureSessionId,
  kubeClient,
  type MeshAdapter,
  type MeshKind,
  parseFeatureResponse,
  tokenSha256,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';
import { applyFeatureEnvironment, removeFeatureEnvironment } from '@detour/mesh-adapters/feature-applier';
import { governingVirtualService } from '@detour/mesh-adapters/istio-virtualservice/governing';
import type { Write } from '@detour/mesh-adapters/plan';
import { DetourError, InvalidInputError } from '@detour/router/errors';
import type { RouteFilter } from '@detour/router/match/index';
import {
  type RouteProbeParams,
  RouteProbeResult,
  TunnelCode,
  type TunnelConnection,
} from '@detour/router/tunnel/index';
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Service } from '@kubernetes/client-node';
import { forwardToAgent } from '../kube/agent-port-forward.ts';
import { discoverMesh } from '../kube/mesh-discovery.ts';
import { findWorkload, selects } from '../kube/target.ts';
import type { Reporter } from '../reporter.ts';
import { AgentTunnel } from '../session/agent-tunnel.ts';
import { describeWrite } from '../session/cluster-routing.ts';

/** `--workload SERVICE[:PORT]=KIND/NAME` as given. */
export interface WorkloadSpec {
  service: string;
  port?: number;
  workload: string;
}

export interface FeatureUpOptions {
  name: string;
  namespace: string;
  filter: RouteFilter;
  workloads: WorkloadSpec[];
  ttlSeconds: number;
  mesh?: MeshKind;
  agentService: string;
  /** Seconds to wait for every route to be live; 0: do not probe. */
  routeTimeout: number;
}

export interface ServiceStatus extends FeatureService {
  mesh: MeshKind;
  /** `live`: a probe with the header reached a pod of the workload; `applied`: written, not verified. */
  status: 'live' | 'applied';
  detail: string;
  pod?: string;
  ms?: number;
}

/**
 * Istio sidecars take ~100 ms (istiod's debounce) and a push to have a change; the subset a route
 * names must be there first, or the header's requests meet "no healthy upstream" meanwhile.
 */
const SUBSET_SETTLE_MS = 1_000;
const settle = () => sleep(SUBSET_SETTLE_MS);

const FEATURE_MESHES: readonly MeshKind[] = ['istio', 'istio-envoyfilter'];

function labelText(labels: Record<string, string> | undefined): string {
  return (
    Object.entries(labels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(',') || 'none'
  );
}

/** Resolves one `--workload`: the Service must exist and select the workload's pods. */
async function resolveService(
  kc: KubeConfig,
  namespace: string,
  spec: WorkloadSpec,
  services: V1Service[],
): Promise<{ service: FeatureService; podLabels: Record<string, string> }> {
  const flag = `--workload ${spec.service}${spec.port ? `:${spec.port}` : ''}=`;
  const service = services.find((s) => s.metadata?.name === spec.service);
  if (!service) {
    throw new InvalidInputError(
      'DETOUR_TARGET_NOT_FOUND',
      `${flag}${spec.workload}: no Service "${spec.service}" in namespace ${namespace}; Services there: ${services.map((s) => s.metadata?.name).join(', ') || 'none'}`,
    );
  }
  const workload = await findWorkload(kc.makeApiClient(AppsV1Api), namespace, spec.workload, flag);
  const podLabels = workload.template.metadata?.labels ?? {};
  const ref = `${workload.kind} ${namespace}/${workload.name}`;
  if (!selects(service, podLabels)) {
    const selecting = services.filter((s) => selects(s, podLabels)).map((s) => s.metadata?.name);
    throw new InvalidInputError(
      'DETOUR_WORKLOAD_NOT_SELECTED',
      `${flag}${spec.workload}: Service ${spec.service} (selector ${labelText(service.spec?.selector)}) does not select the pods of ${ref} (labels ${labelText(podLabels)}), so the mesh cannot route its requests there; ` +
        (selecting.length > 0
          ? `Services that do: ${selecting.join(', ')}`
          : 'no Service selects them: label the pods so the Service selects them'),
    );
  }
  if (Object.keys(workload.matchLabels).length === 0) {
    throw new InvalidInputError(
      'DETOUR_WORKLOAD_NOT_SELECTED',
      `${flag}${spec.workload}: ${ref} has no spec.selector.matchLabels, which the environment's subset selects its pods by: give the workload a matchLabels selector`,
    );
  }
  const ports = service.spec?.ports ?? [];
  const port = spec.port === undefined ? ports : ports.filter((p) => p.port === spec.port);
  if (port.length !== 1 || port[0] === undefined) {
    throw new InvalidInputError(
      'DETOUR_AMBIGUOUS_TARGET',
      `${flag}${spec.workload}: Service ${spec.service} has ${spec.port === undefined ? 'several ports' : `no port ${spec.port}`} (${ports.map((p) => p.port).join(', ') || 'none'}): name one as --workload ${spec.service}:PORT=${spec.workload}`,
    );
  }
  return {
    service: {
      service: spec.service,
      host: `${spec.service}.${namespace}.svc.cluster.local`,
      port: port[0].port,
      workload: `${workload.kind}/${workload.name}`,
      labels: workload.matchLabels,
    },
    podLabels,
  };
}

function holder(): string {
  return `${userInfo().username}@${hostname()}`;
}

/**
 * `detour feature up`: resolves every workload and the mesh (refusing anything but Istio with a
 * clear error) before the cluster is touched, writes the environment (Lease, subsets, routes), and
 * probes each route through the agent until a request with the header is answered by a pod of
 * the environment's workload.
 */
export async function featureUp(
  kc: KubeConfig,
  options: FeatureUpOptions,
  reporter: Reporter,
): Promise<ServiceStatus[]> {
  const { namespace } = options;
  const core = kc.makeApiClient(CoreV1Api);
  const client = kubeClient(kc);
  const services = (await core.listNamespacedService({ namespace })).items;
  const resolved = [];
  for (const spec of options.workloads) resolved.push(await resolveService(kc, namespace, spec, services));

  const discovery = await discoverMesh(kc, namespace);
  const virtualServices = discovery.crds.includes('virtualservices.networking.istio.io')
    ? await client.list(QUERIES.virtualServices)
    : [];
  const adapters = new Map<string, MeshAdapter>();
  for (const { service, podLabels } of resolved) {
    const detection = detectMesh({
      ...discovery,
      podLabels,
      governingVirtualService: governingVirtualService(virtualServices, service.host).virtualService,
      ...(options.mesh ? { override: options.mesh } : {}),
    });
    if (!FEATURE_MESHES.includes(detection.mesh)) {
      throw new InvalidInputError(
        'DETOUR_FEATURE_NEEDS_ISTIO',
        `a feature environment routes to its workloads through Istio DestinationRule subsets, supported with --mesh istio or --mesh istio-envoyfilter; ${service.service} in ${namespace} would route with ${detection.mesh} (${detection.reason}). Without Istio, give the feature a namespace of its own and take its traffic there with \`detour exec --steal-all\``,
      );
    }
    reporter.step(
      'mesh.detected',
      `${service.service}: routing with ${detection.mesh}: ${detection.reason}`,
      {
        service: service.service,
        mesh: detection.mesh,
      },
    );
    adapters.set(service.host, adapterFor(detection.mesh));
  }

  const agentService = await core
    .readNamespacedService({ name: options.agentService, namespace })
    .catch(() => undefined);
  const token = agentService ? randomBytes(24).toString('base64url') : undefined;
  const env: FeatureEnvironment = {
    name: options.name,
    namespace,
    filter: options.filter,
    holder: holder(),
    services: resolved.map((r) => r.service),
  };
  const result = await applyFeatureEnvironment(client, env, {
    ttlSeconds: options.ttlSeconds,
    now: new Date(),
    agent: {
      name: options.agentService,
      namespace,
      port: agentService?.spec?.ports?.[0]?.port ?? 8080,
    },
    adapterFor: (host) => adapters.get(host) as MeshAdapter,
    ...(token ? { tokenSha256: tokenSha256(token) } : {}),
    waitForPropagation: settle,
  });
  for (const warning of result.warnings) reporter.warn('route.warning', warning);
  reporter.step(
    result.renewed ? 'feature.renewed' : 'feature.applied',
    `feature environment ${options.name} ${result.renewed ? 'renewed' : 'written'} (${result.applied.map(describeWrite).join(', ') || 'no route changes'}); its lease holds it for ${options.ttlSeconds} s`,
    { writes: result.applied.length, ttlSeconds: options.ttlSeconds },
  );
  const statuses = env.services.map(
    (service): ServiceStatus => ({
      ...service,
      mesh: adapters.get(service.host)?.kind as MeshKind,
      status: 'applied',
      detail: 'not verified',
    }),
  );
  const probeHeaders = exactHeaders(options.filter);
  if (options.routeTimeout === 0) return statuses;
  if (!agentService || !token) {
    warnUnverified(
      reporter,
      statuses,
      `no agent Service ${options.agentService} in ${namespace} to probe from (install it with \`kubectl apply -k manifests/agent -n ${namespace}\`)`,
    );
    return statuses;
  }
  if (probeHeaders === undefined) {
    warnUnverified(reporter, statuses, 'only exact header values can be probed');
    return statuses;
  }
  await probeRoutes(kc, options, token, probeHeaders, statuses, reporter);
  return statuses;
}

function warnUnverified(reporter: Reporter, statuses: ServiceStatus[], why: string): void {
  for (const s of statuses) s.detail = `not verified: ${why}`;
  reporter.warn('route.unverified', `the environment's routes are applied, not verified: ${why}`);
}

/** The header values a probe sends: the filter's exact values, or undefined when it has others. */
function exactHeaders(filter: RouteFilter): Record<string, string> | undefined {
  if (filter.uri || filter.method || filter.withoutHeaders) return undefined;
  const headers: Record<string, string> = {};
  for (const [name, match] of Object.entries(filter.headers ?? {})) {
    if (!('exact' in match)) return undefined;
    headers[name] = match.exact;
  }
  return headers;
}

/**
 * Through a tunnel to the agent (admitted by the environment's Lease), asks the agent to send a
 * request with the header to each Service from inside the mesh, until the answer carries the
 * environment's response header naming a pod of the workload.
 */
async function probeRoutes(
  kc: KubeConfig,
  options: FeatureUpOptions,
  token: string,
  headers: Record<string, string>,
  statuses: ServiceStatus[],
  reporter: Reporter,
): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const portForward = await forwardToAgent(kc, options.namespace, options.agentService);
  const tunnel = new AgentTunnel({
    address: portForward.address,
    connect: () => portForward.dial(),
    token,
    client: holder(),
    onConnected: async () => {},
    onStream: (stream) => stream.reset(TunnelCode.refused, 'feature probes take no streams'),
  });
  try {
    const connection = await tunnel.start().catch((error: Error) => {
      throw portForward.lastError() ?? error;
    });
    const began = Date.now();
    for (const status of statuses) {
      const pods = (
        await core.listNamespacedPod({
          namespace: options.namespace,
          labelSelector: Object.entries(status.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(','),
        })
      ).items;
      const podByIp = new Map(pods.map((p) => [p.status?.podIP ?? '', p.metadata?.name ?? '']));
      await probeOne(
        connection,
        status,
        headers,
        podByIp,
        featureSessionId(options.name),
        began,
        options.routeTimeout * 1000,
      );
      if (status.status === 'live') {
        reporter.step(
          'route.live',
          `${status.service}: a request with ${Object.entries(headers)
            .map(([k, v]) => `${k}: ${v}`)
            .join(', ')} reached ${status.workload} (pod ${status.pod}), ${status.ms} ms after the write`,
          { service: status.service, pod: status.pod, ms: status.ms },
        );
      } else {
        reporter.warn('route.unverified', `${status.service}: ${status.detail}`, { service: status.service });
      }
    }
  } finally {
    tunnel.stop();
    await portForward.close();
  }
}

async function probeOne(
  connection: TunnelConnection,
  status: ServiceStatus,
  headers: Record<string, string>,
  podByIp: Map<string, string>,
  subset: string,
  began: number,
  timeoutMs: number,
): Promise<void> {
  let last = 'no answer yet';
  while (Date.now() - began < timeoutMs) {
    const params: RouteProbeParams = {
      url: `http://${status.host}:${status.port}/`,
      headers,
      responseHeader: FEATURE_RESPONSE_HEADER,
    };
    const result = RouteProbeResult.parse(await connection.request('route.probe', params));
    const answer = parseFeatureResponse(result.header);
    const ip = answer?.upstream.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    const pod = ip === undefined ? undefined : podByIp.get(ip);
    if (answer !== undefined && pod !== undefined && answer.subset === subset) {
      status.status = 'live';
      status.pod = pod;
      status.ms = Date.now() - began;
      status.detail = `answered by pod ${pod} (${answer.upstream})`;
      return;
    }
    last = answer
      ? `answered by ${answer.upstream}, which is no pod of ${status.workload}`
      : `${result.detail}, without the environment's ${FEATURE_RESPONSE_HEADER} header (the route is not in effect yet)`;
    await sleep(200);
  }
  status.detail = `not verified within ${timeoutMs / 1000} s: last probe ${last}; requests with the header may not reach ${status.workload} yet`;
}

/** `detour feature down`: the environment's routes, then its subsets, then its Lease. */
export async function featureDown(
  kc: KubeConfig,
  namespace: string,
  name: string,
): Promise<{ found: boolean; applied: Write[] }> {
  return removeFeatureEnvironment(kubeClient(kc), namespace, name, allAdapters(), {
    waitForPropagation: settle,
  });
}

export class FeatureNotFoundError extends DetourError {
  constructor(name: string, namespace: string, existing: readonly string[]) {
    super(
      'DETOUR_FEATURE_NOT_FOUND',
      `no feature environment ${name} in namespace ${namespace}; there: ${existing.join(', ') || 'none'} (\`detour feature list -n ${namespace}\`)`,
    );
  }
}
