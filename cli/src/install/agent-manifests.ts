import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { KubeObject, LeaseRef } from '@detour/mesh-adapters';
import { LEASE_ANNOTATION, leaseOwnerReference, managedLabels } from '@detour/mesh-adapters/session-records';
import { DetourError } from '@detour/router/errors';
import { parseAllDocuments } from 'yaml';

/**
 * What `detour install` puts on everything it creates, and what `detour uninstall` selects by. Not
 * `managed-by: detour`: that value marks session objects, and the janitor deletes those no session
 * uses any more — the installed agent's Service would be one.
 */
export const INSTALL_LABELS = {
  'app.kubernetes.io/managed-by': 'detour-install',
  'app.kubernetes.io/part-of': 'detour',
} as const;

export function isInstalledByDetour(object: KubeObject): boolean {
  return Object.entries(INSTALL_LABELS).every(([key, value]) => object.metadata.labels?.[key] === value);
}

/** The kinds manifests/agent holds, in the order they are applied (removed in reverse). */
export const AGENT_KINDS = [
  { apiVersion: 'v1', kind: 'ServiceAccount', resource: 'serviceaccounts' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', resource: 'roles' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', resource: 'rolebindings' },
  { apiVersion: 'apps/v1', kind: 'Deployment', resource: 'deployments' },
  { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', resource: 'poddisruptionbudgets' },
  { apiVersion: 'v1', kind: 'Service', resource: 'services' },
] as const;

/** Label of the installed agent's pods (its Service selects them): `kubectl get pods -l` names it. */
export const AGENT_NAME_LABEL = 'app.kubernetes.io/name';

interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    serviceAccountName?: string;
    containers: Array<{ name: string; image: string; env?: Array<Record<string, unknown>> }>;
    [field: string]: unknown;
  };
}

/**
 * The manifests/ folder (agent and rbac), found from this module upwards: beside the sources in a
 * checkout (cli/src/install → manifests), and at the package root when the CLI is installed as a
 * package.
 */
export function manifestsDir(from: string = import.meta.dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'manifests');
    if (existsSync(join(candidate, 'agent', 'kustomization.yaml'))) return candidate;
    if (dirname(dir) === dir)
      throw new DetourError(
        'DETOUR_MANIFESTS_MISSING',
        `no manifests/agent/kustomization.yaml above ${from}: reinstall the detour package (it ships manifests/)`,
      );
  }
}

/** The objects of the kustomize base as written (its kustomization lists the files). */
function baseObjects(dir: string): KubeObject[] {
  const kustomization = parseAllDocuments(
    readFileSync(join(dir, 'kustomization.yaml'), 'utf8'),
  )[0]?.toJS() as {
    resources: string[];
  };
  return kustomization.resources.flatMap((file) =>
    parseAllDocuments(readFileSync(join(dir, file), 'utf8'))
      .map((doc) => doc.toJS() as KubeObject | null)
      .filter((object): object is KubeObject => object !== null),
  );
}

/** The headless Service the replicas forward each other requests through (one pod needs none). */
function isPeersService(object: KubeObject): boolean {
  return (
    object.kind === 'Service' && (object.spec as { clusterIP?: string } | undefined)?.clusterIP === 'None'
  );
}

function templateOf(object: KubeObject): PodTemplate {
  return (object.spec as { template: PodTemplate }).template;
}

export interface AgentManifestOptions {
  namespace: string;
  image: string;
  /** Added to the pod template (the local cluster's image digest rolls the pods on a rebuild). */
  podAnnotations?: Record<string, string>;
  /** The Deployment's replicas (default: the manifest's, 2). */
  replicas?: number;
  /** manifests/agent (default: found from this module, see manifestsDir). */
  dir?: string;
}

/**
 * manifests/agent for one namespace, as `kubectl apply -k` with a namespace and an image would make
 * it, plus the install labels on every object and on the agent's pods.
 */
export function agentManifests(options: AgentManifestOptions): KubeObject[] {
  return baseObjects(options.dir ?? join(manifestsDir(), 'agent')).map((object) => {
    object.metadata.namespace = options.namespace;
    object.metadata.labels = { ...object.metadata.labels, ...INSTALL_LABELS };
    if (object.kind === 'RoleBinding') {
      for (const subject of (object as { subjects?: Array<Record<string, string>> }).subjects ?? [])
        if (subject.kind === 'ServiceAccount') subject.namespace = options.namespace;
    }
    if (object.kind === 'Deployment') {
      const template = templateOf(object);
      template.metadata = {
        ...template.metadata,
        labels: { ...template.metadata?.labels, ...INSTALL_LABELS },
        annotations: { ...template.metadata?.annotations, ...options.podAnnotations },
      };
      for (const container of template.spec.containers) container.image = options.image;
      if (options.replicas !== undefined) (object.spec as { replicas?: number }).replicas = options.replicas;
    }
    return object;
  });
}

export interface EphemeralAgentOptions {
  namespace: string;
  image: string;
  sessionId: string;
  /** The session's Lease (with its uid): it owns every object, so garbage collection removes them. */
  lease: LeaseRef;
  dir?: string;
}

/** Name of a session's ephemeral agent: its Pod, Service, ServiceAccount, Role and RoleBinding. */
export function ephemeralAgentName(sessionId: string): string {
  return `detour-agent-${sessionId}`;
}

/** The pod label that tells ephemeral agents from the installed one (whose Service must not select them). */
export const EPHEMERAL_AGENT_LABEL_VALUE = 'detour-agent-ephemeral';

/**
 * A per-session agent from the same manifests/agent: the Deployment's pod template as a Pod (same
 * securityContext, same sidecar injection), the Service pointed at it, and its own ServiceAccount
 * and Role, so the agent admits the CLI by the session Lease and ends that Lease if the CLI
 * vanishes. Every object is owned by the Lease. The Role keeps the installed agent's rules except
 * writes to Services: a developer may grant only what it holds, and detour-developer does not
 * write Services (its janitor skips Service-selector routes; `detour clean` reverts them).
 */
/** The Service of a session's ephemeral agent, before it exists: what the session's route points to. */
export function ephemeralAgentService(
  sessionId: string,
  dir?: string,
): { name: string; port: number; selector: Record<string, string> } {
  const service = baseObjects(dir ?? join(manifestsDir(), 'agent')).find(
    (o) => o.kind === 'Service' && !isPeersService(o),
  );
  return {
    name: ephemeralAgentName(sessionId),
    port: (service?.spec as { ports?: Array<{ port: number }> } | undefined)?.ports?.[0]?.port ?? 8080,
    selector: ephemeralAgentSelector(sessionId),
  };
}

function ephemeralAgentSelector(sessionId: string): Record<string, string> {
  return { [AGENT_NAME_LABEL]: EPHEMERAL_AGENT_LABEL_VALUE, ...managedLabels(sessionId) };
}

export function ephemeralAgentObjects(options: EphemeralAgentOptions): KubeObject[] {
  const name = ephemeralAgentName(options.sessionId);
  const owner = leaseOwnerReference(options.lease, options.namespace);
  if (!owner) throw new Error('an ephemeral agent needs the Lease uid of its session, in its namespace');
  const selector = ephemeralAgentSelector(options.sessionId);
  const metadata = (labels: Record<string, string>) => ({
    name,
    namespace: options.namespace,
    labels: { ...labels, ...selector },
    annotations: { [LEASE_ANNOTATION]: `${options.lease.namespace}/${options.lease.name}` },
    ownerReferences: [owner],
  });
  // One pod, owned by the session: no disruption budget (it would block draining the node), no peers.
  const objects = baseObjects(options.dir ?? join(manifestsDir(), 'agent')).filter(
    (object) => object.kind !== 'PodDisruptionBudget' && !isPeersService(object),
  );
  return objects.map((object): KubeObject => {
    const labels = { ...object.metadata.labels };
    switch (object.kind) {
      case 'Deployment': {
        const template = templateOf(object);
        for (const container of template.spec.containers) {
          container.image = options.image;
          // It would name the peers Service, which one pod does without.
          container.env = container.env?.filter((variable) => variable.name !== 'DETOUR_PEER_HOST');
        }
        return {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: metadata({ ...template.metadata?.labels }),
          spec: {
            ...template.spec,
            serviceAccountName: name,
            // The session is over when the pod goes: no drain to wait for.
            terminationGracePeriodSeconds: 5,
          },
        };
      }
      case 'Service':
        return { ...object, metadata: metadata(labels), spec: { ...(object.spec as object), selector } };
      case 'Role': {
        const rules = (
          object as unknown as { rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> }
        ).rules;
        return {
          ...object,
          metadata: metadata(labels),
          rules: rules.map((rule) =>
            rule.apiGroups.includes('') && rule.resources.includes('services')
              ? { ...rule, verbs: rule.verbs.filter((verb) => verb === 'get' || verb === 'list') }
              : rule,
          ),
        };
      }
      case 'RoleBinding':
        return {
          ...object,
          metadata: metadata(labels),
          roleRef: { ...(object as unknown as { roleRef: object }).roleRef, name },
          subjects: [{ kind: 'ServiceAccount', name, namespace: options.namespace }],
        };
      default:
        return { ...object, metadata: metadata(labels) };
    }
  });
}
