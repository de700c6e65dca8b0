import { InvalidInputError } from '@detour/router/errors';
import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Container,
  type V1PodTemplateSpec,
  type V1Service,
} from '@kubernetes/client-node';

/** The workload `--target` names: enough for its env and files (an egress-only session). */
export interface ResolvedWorkload {
  namespace: string;
  workload: { kind: 'Deployment' | 'StatefulSet' | 'DaemonSet'; name: string };
  template: V1PodTemplateSpec;
  container: V1Container;
}

/** What `--target` names, resolved to what every later step of a routed session needs. */
export interface ResolvedTarget extends ResolvedWorkload {
  service: { name: string; host: string; port: number; targetPort: number };
}

const workloadKinds: Record<string, ResolvedTarget['workload']['kind']> = {
  deploy: 'Deployment',
  deployment: 'Deployment',
  deployments: 'Deployment',
  sts: 'StatefulSet',
  statefulset: 'StatefulSet',
  ds: 'DaemonSet',
  daemonset: 'DaemonSet',
};

/** Containers the mesh injects: never the developer's target. */
const injected = new Set(['istio-proxy', 'istio-init', 'istio-validation']);

function notFound(message: string): InvalidInputError {
  return new InvalidInputError('DETOUR_TARGET_NOT_FOUND', message);
}

export function selects(service: V1Service, labels: Record<string, string>): boolean {
  const selector = service.spec?.selector;
  return (
    selector !== undefined &&
    Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([key, value]) => labels[key] === value)
  );
}

export interface FoundWorkload {
  kind: ResolvedTarget['workload']['kind'];
  name: string;
  template: V1PodTemplateSpec;
  /** `spec.selector.matchLabels`: the labels that select exactly this workload's pods. */
  matchLabels: Record<string, string>;
}

/** `deploy/NAME`, `sts/NAME` or `ds/NAME` in `namespace`; the error names `flag` and lists what exists. */
export async function findWorkload(
  apps: AppsV1Api,
  namespace: string,
  ref: string,
  flag = '--target',
): Promise<FoundWorkload> {
  const [kindWord, name] = ref.split('/', 2);
  const kind = workloadKinds[kindWord ?? ''];
  if (!kind || !name) {
    throw new InvalidInputError(
      'DETOUR_BAD_OPTION',
      `${flag} ${JSON.stringify(ref)}: expected deploy/NAME, sts/NAME, ds/NAME${flag === '--target' ? ' or a Service name' : ''}`,
    );
  }
  const list =
    kind === 'Deployment'
      ? (await apps.listNamespacedDeployment({ namespace })).items
      : kind === 'StatefulSet'
        ? (await apps.listNamespacedStatefulSet({ namespace })).items
        : (await apps.listNamespacedDaemonSet({ namespace })).items;
  const found = list.find((item) => item.metadata?.name === name);
  if (!found) {
    throw notFound(
      `no ${kind} "${name}" in namespace ${namespace}; ${kind}s there: ${list.map((item) => item.metadata?.name).join(', ') || 'none'}`,
    );
  }
  return {
    kind,
    name,
    template: found.spec?.template ?? {},
    matchLabels: found.spec?.selector?.matchLabels ?? {},
  };
}

/** A Service's targetPort as a container port number (named ports resolve through the container). */
function containerPortOf(
  targetPort: number | string | undefined,
  servicePort: number,
  container: V1Container,
): number | undefined {
  if (targetPort === undefined) return servicePort;
  if (typeof targetPort === 'number' || /^\d+$/.test(targetPort)) return Number(targetPort);
  return container.ports?.find((port) => port.name === targetPort)?.containerPort;
}

export interface TargetSpec {
  target: string;
  namespace: string;
  container?: string;
  port?: number;
}

/**
 * Resolves `deploy/orders`, `sts/db`, `ds/x` or a bare Service name to the workload and its
 * container. Errors list what does exist, so a typo is a fix away.
 */
export async function resolveWorkload(kc: KubeConfig, spec: TargetSpec): Promise<ResolvedWorkload> {
  return (await lookUp(kc, spec)).resolved;
}

/** The workload, its container, and the Service port that carries its traffic. */
export async function resolveTarget(kc: KubeConfig, spec: TargetSpec): Promise<ResolvedTarget> {
  const { resolved, services } = await lookUp(kc, spec);
  return { ...resolved, service: servicePort(resolved, services, spec.port) };
}

async function lookUp(
  kc: KubeConfig,
  spec: TargetSpec,
): Promise<{ resolved: ResolvedWorkload; services: V1Service[] }> {
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const { namespace } = spec;
  const [kindWord, name] = spec.target.includes('/') ? spec.target.split('/', 2) : ['svc', spec.target];
  const services = (await core.listNamespacedService({ namespace })).items;

  let workload: ResolvedTarget['workload'];
  let template: V1PodTemplateSpec;
  if (kindWord === 'svc' || kindWord === 'service') {
    const service = services.find((candidate) => candidate.metadata?.name === name);
    if (!service) {
      throw notFound(
        `no Service "${name}" in namespace ${namespace}; Services there: ${services.map((s) => s.metadata?.name).join(', ') || 'none'}`,
      );
    }
    const deployments = (await apps.listNamespacedDeployment({ namespace })).items;
    const owner = deployments.find((deployment) =>
      selects(service, deployment.spec?.template.metadata?.labels ?? {}),
    );
    if (!owner?.metadata?.name)
      throw notFound(
        `no Deployment in ${namespace} has pods that Service ${name} selects: name the workload with --target deploy/<name>`,
      );
    workload = { kind: 'Deployment', name: owner.metadata.name };
    template = owner.spec?.template ?? {};
  } else {
    const found = await findWorkload(apps, namespace, spec.target);
    workload = { kind: found.kind, name: found.name };
    template = found.template;
  }

  const containers = (template.spec?.containers ?? []).filter((container) => !injected.has(container.name));
  const container = spec.container
    ? containers.find((candidate) => candidate.name === spec.container)
    : containers[0];
  if (!container) {
    throw notFound(
      `${workload.kind} ${workload.name} has no container ${JSON.stringify(spec.container ?? '')}; containers: ${containers.map((c) => c.name).join(', ')}`,
    );
  }

  return { resolved: { namespace, workload, template, container }, services };
}

function servicePort(
  { namespace, workload, template, container }: ResolvedWorkload,
  services: readonly V1Service[],
  port: number | undefined,
): ResolvedTarget['service'] {
  const labels = template.metadata?.labels ?? {};
  const candidates = services
    .filter((service) => selects(service, labels))
    .flatMap((service) =>
      (service.spec?.ports ?? []).map((port) => ({
        name: service.metadata?.name ?? '',
        host: `${service.metadata?.name}.${namespace}.svc.cluster.local`,
        port: port.port,
        targetPort: containerPortOf(port.targetPort as number | string | undefined, port.port, container),
      })),
    )
    .filter((candidate): candidate is ResolvedTarget['service'] => candidate.targetPort !== undefined)
    .filter((candidate) => port === undefined || candidate.port === port || candidate.targetPort === port);
  if (candidates.length === 0) {
    throw notFound(
      `no Service in ${namespace} selects the pods of ${workload.kind} ${workload.name}${port ? ` on port ${port}` : ''}: detour routes a Service's traffic, so create one, or pass --egress-only to run it here without taking requests (its env and files, its calls and DNS through the cluster)`,
    );
  }
  if (candidates.length > 1 && port === undefined) {
    throw new InvalidInputError(
      'DETOUR_AMBIGUOUS_TARGET',
      `${workload.kind} ${workload.name} is served on several Service ports (${candidates.map((c) => `${c.name}:${c.port}`).join(', ')}): pick one with --port`,
    );
  }
  return candidates[0] as ResolvedTarget['service'];
}
