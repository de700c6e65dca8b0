import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { kubeClient } from '@detour/mesh-adapters';
import { DetourError } from '@detour/router/errors';
import {
  CoreV1Api,
  type KubeConfig,
  type V1ConfigMap,
  type V1Pod,
  type V1Secret,
} from '@kubernetes/client-node';
import type { ResolvedWorkload } from './target.ts';

export interface TargetEnvironment {
  /** The container's environment as the pod sees it, as far as detour may read it. */
  env: Record<string, string>;
  /** Names of the variables whose values come from Secrets (never to be printed). */
  secretVariables: string[];
  /** ConfigMap-backed (and, when asked, Secret-backed) files, written under `root` at their mount paths. */
  files: string[];
  /** What could not be copied and why (Secrets unless asked for). */
  skipped: string[];
}

/** The optional role that lets a developer's `--env-secrets` read Secrets. */
export const SECRETS_ROLE = 'detour-developer-secrets';

/**
 * `--env-secrets` preflight: asks the apiserver whether this identity may get Secrets in the
 * namespace, so a missing grant is one clear error before anything is read or created.
 */
export async function requireSecretAccess(kc: KubeConfig, namespace: string): Promise<void> {
  const review = await kubeClient(kc).selfSubjectAccessReview({
    verb: 'get',
    group: '',
    resource: 'secrets',
    namespace,
  });
  if (review.allowed) return;
  throw new DetourError(
    'DETOUR_PERMISSION_DENIED',
    `--env-secrets needs "get secrets" in namespace ${namespace}, which your identity (${kc.getCurrentUser()?.name ?? 'current context'}) is not allowed: ask an admin to bind the optional ClusterRole ${SECRETS_ROLE} there (kubectl apply -f manifests/rbac/${SECRETS_ROLE}.yaml; kubectl -n ${namespace} create rolebinding ${SECRETS_ROLE} --clusterrole=${SECRETS_ROLE} --user=<you>), or drop --env-secrets and set those variables yourself`,
  );
}

/** Kubernetes' `$(VAR)` expansion: earlier variables only; `$$(VAR)` escapes; unknown stays as is. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) =>
    name === undefined ? '$' : (env[name] ?? match),
  );
}

function fieldValue(path: string, pod: V1Pod | undefined, namespace: string): string | undefined {
  const labels = /^metadata\.labels\['(.+)'\]$/.exec(path);
  if (labels) return pod?.metadata?.labels?.[labels[1] as string];
  switch (path) {
    case 'metadata.namespace':
      return namespace;
    case 'metadata.name':
      return pod?.metadata?.name;
    case 'status.podIP':
      return pod?.status?.podIP;
    case 'spec.nodeName':
      return pod?.spec?.nodeName;
    case 'spec.serviceAccountName':
      return pod?.spec?.serviceAccountName;
    default:
      return undefined;
  }
}

/** Secret data is base64; values become UTF-8 strings (env) or the bytes themselves (files). */
function secretData(secret: V1Secret | undefined): Record<string, Buffer> {
  return Object.fromEntries(
    Object.entries(secret?.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')]),
  );
}

const NOT_ASKED = 'pass --env-secrets to copy it (needs get on secrets), or set it yourself';

/**
 * The target container's environment and ConfigMap files, so the local process starts configured
 * like the pod. Values a running pod knows (its name, IP) come from one of the target's pods when
 * one runs. Secrets are read only with `secrets: true` (`--env-secrets`, after
 * `requireSecretAccess`); otherwise they are listed as skipped.
 */
export async function targetEnvironment(
  kc: KubeConfig,
  target: ResolvedWorkload,
  root: string,
  options: { secrets?: boolean } = {},
): Promise<TargetEnvironment> {
  const core = kc.makeApiClient(CoreV1Api);
  const { namespace, container, template } = target;
  const configMaps = new Map<string, V1ConfigMap | undefined>();
  const configMap = async (name: string): Promise<V1ConfigMap | undefined> => {
    if (!configMaps.has(name))
      configMaps.set(name, await core.readNamespacedConfigMap({ name, namespace }).catch(() => undefined));
    return configMaps.get(name);
  };
  const secrets = new Map<string, Record<string, Buffer> | undefined>();
  const secret = async (name: string): Promise<Record<string, Buffer> | undefined> => {
    if (!secrets.has(name))
      secrets.set(
        name,
        await core
          .readNamespacedSecret({ name, namespace })
          .then(secretData)
          .catch(() => undefined),
      );
    return secrets.get(name);
  };
  const secretVariables = new Set<string>();
  const selector = Object.entries(template.metadata?.labels ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
  const pods = selector ? (await core.listNamespacedPod({ namespace, labelSelector: selector })).items : [];
  const pod = pods.find((candidate) => candidate.status?.phase === 'Running') ?? pods[0];

  const env: Record<string, string> = {};
  const skipped: string[] = [];
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef?.name) {
      const data = (await configMap(source.configMapRef.name))?.data ?? {};
      for (const [key, value] of Object.entries(data)) env[`${source.prefix ?? ''}${key}`] = value;
    } else if (source.secretRef?.name) {
      const name = source.secretRef.name;
      if (!options.secrets) skipped.push(`envFrom Secret ${name}: ${NOT_ASKED}`);
      else {
        const data = await secret(name);
        if (data === undefined && !source.secretRef.optional)
          skipped.push(`envFrom Secret ${name}: not found`);
        for (const [key, value] of Object.entries(data ?? {})) {
          env[`${source.prefix ?? ''}${key}`] = value.toString('utf8');
          secretVariables.add(`${source.prefix ?? ''}${key}`);
        }
      }
    }
  }
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    if (!from) env[variable.name] = expand(variable.value ?? '', env);
    else if (from.configMapKeyRef) {
      const value = (await configMap(from.configMapKeyRef.name ?? ''))?.data?.[from.configMapKeyRef.key];
      if (value !== undefined) env[variable.name] = value;
      else if (!from.configMapKeyRef.optional)
        skipped.push(
          `${variable.name}: ConfigMap ${from.configMapKeyRef.name} has no key ${from.configMapKeyRef.key}`,
        );
    } else if (from.fieldRef) {
      const value = fieldValue(from.fieldRef.fieldPath, pod, namespace);
      if (value !== undefined) env[variable.name] = value;
      else skipped.push(`${variable.name}: ${from.fieldRef.fieldPath} needs a running pod of the target`);
    } else if (from.secretKeyRef) {
      const ref = from.secretKeyRef;
      const value = options.secrets ? (await secret(ref.name ?? ''))?.[ref.key] : undefined;
      if (value !== undefined) {
        env[variable.name] = value.toString('utf8');
        secretVariables.add(variable.name);
      } else if (!options.secrets) skipped.push(`${variable.name}: from Secret ${ref.name}; ${NOT_ASKED}`);
      else if (!ref.optional) skipped.push(`${variable.name}: Secret ${ref.name} has no key ${ref.key}`);
    } else skipped.push(`${variable.name}: resource fields have no local meaning`);
  }

  const files: string[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = template.spec?.volumes?.find((candidate) => candidate.name === mount.name);
    const fromSecret = volume?.secret?.secretName;
    if (fromSecret && !options.secrets) {
      skipped.push(`files at ${mount.mountPath}: from Secret ${fromSecret}; ${NOT_ASKED}`);
      continue;
    }
    const source = fromSecret
      ? { data: (await secret(fromSecret)) ?? {}, items: volume?.secret?.items, mode: 0o600 }
      : volume?.configMap?.name
        ? {
            data: (await configMap(volume.configMap.name))?.data ?? {},
            items: volume.configMap.items,
            mode: 0o644,
          }
        : undefined;
    if (!source) continue;
    const { data } = source;
    const items = source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const item of items) {
      const value = data[item.key];
      if (value === undefined) continue;
      const relative = mount.subPath ? (item.key === mount.subPath ? '' : undefined) : item.path;
      if (relative === undefined) continue;
      const file = join(root, mount.mountPath, relative);
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      writeFileSync(file, value, { mode: source.mode });
      files.push(file);
    }
  }
  return { env, secretVariables: [...secretVariables], files, skipped };
}
