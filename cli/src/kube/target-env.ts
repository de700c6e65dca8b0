import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1ConfigMap, type V1Pod } from '@kubernetes/client-node';
import type { ResolvedTarget } from './target.ts';

export interface TargetEnvironment {
  /** The container's environment as the pod sees it, as far as detour may read it. */
  env: Record<string, string>;
  /** ConfigMap-backed files, written under `root` at their mount paths. */
  files: string[];
  /** What could not be copied and why (Secrets: detour's role does not read them). */
  skipped: string[];
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

/**
 * The target container's environment and ConfigMap files, so the local process starts configured
 * like the pod. Values a running pod knows (its name, IP) come from one of the target's pods when
 * one runs. Secrets are listed as skipped, never read: detour's role does not grant them.
 */
export async function targetEnvironment(
  kc: KubeConfig,
  target: ResolvedTarget,
  root: string,
): Promise<TargetEnvironment> {
  const core = kc.makeApiClient(CoreV1Api);
  const { namespace, container, template } = target;
  const configMaps = new Map<string, V1ConfigMap | undefined>();
  const configMap = async (name: string): Promise<V1ConfigMap | undefined> => {
    if (!configMaps.has(name))
      configMaps.set(name, await core.readNamespacedConfigMap({ name, namespace }).catch(() => undefined));
    return configMaps.get(name);
  };
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
    } else if (source.secretRef?.name)
      skipped.push(
        `envFrom Secret ${source.secretRef.name}: Secrets are not read; set those variables yourself`,
      );
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
    } else if (from.secretKeyRef)
      skipped.push(
        `${variable.name}: from Secret ${from.secretKeyRef.name}; Secrets are not read, set it yourself`,
      );
    else skipped.push(`${variable.name}: resource fields have no local meaning`);
  }

  const files: string[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = template.spec?.volumes?.find((candidate) => candidate.name === mount.name);
    if (!volume?.configMap?.name) continue;
    const data = (await configMap(volume.configMap.name))?.data ?? {};
    const items = volume.configMap.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const item of items) {
      const value = data[item.key];
      if (value === undefined) continue;
      const relative = mount.subPath ? (item.key === mount.subPath ? '' : undefined) : item.path;
      if (relative === undefined) continue;
      const file = join(root, mount.mountPath, relative);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, value);
      files.push(file);
    }
  }
  return { env, files, skipped };
}
