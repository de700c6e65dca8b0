import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResourceAttributes } from '@detour/mesh-adapters';
import { parseAllDocuments } from 'yaml';
import { manifestsDir } from './agent-manifests.ts';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
}

export interface ShippedRole {
  name: string;
  /** manifests/rbac/<file> */
  file: string;
  rules: Rule[];
}

/** The ClusterRoles detour ships in manifests/rbac, in file-name order. */
export function shippedRoles(dir = join(manifestsDir(), 'rbac')): ShippedRole[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.yaml'))
    .sort()
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(dir, file), 'utf8'))
        .map((doc) => doc.toJS() as { kind?: string; metadata?: { name?: string }; rules?: Rule[] } | null)
        .filter((object) => object?.kind === 'ClusterRole')
        .map((object) => ({
          name: object?.metadata?.name ?? '',
          file: `manifests/rbac/${file}`,
          rules: object?.rules ?? [],
        })),
    );
}

function covers(rule: Rule, attributes: ResourceAttributes): boolean {
  const resource = attributes.subresource
    ? `${attributes.resource}/${attributes.subresource}`
    : attributes.resource;
  const has = (list: string[] | undefined, value: string) => list?.includes(value) || list?.includes('*');
  return (
    has(rule.apiGroups, attributes.group) === true &&
    has(rule.resources, resource) === true &&
    has(rule.verbs, attributes.verb) === true
  );
}

/** The first shipped role that grants `attributes` (the one to bind when it is missing). */
export function roleGranting(
  attributes: ResourceAttributes,
  roles: readonly ShippedRole[] = shippedRoles(),
): ShippedRole | undefined {
  return roles.find((role) => role.rules.some((rule) => covers(rule, attributes)));
}

/** `get pods/portforward in staging`: how a check names a verb. */
export function describeAttributes(attributes: ResourceAttributes): string {
  const resource = `${attributes.resource}${attributes.subresource ? `/${attributes.subresource}` : ''}${attributes.group ? `.${attributes.group}` : ''}`;
  return `${attributes.verb} ${resource} ${attributes.namespace ? `in ${attributes.namespace}` : '(all namespaces)'}`;
}

/** The kubectl command that binds a shipped role to a user, in one namespace or everywhere. */
export function bindCommand(role: ShippedRole, user: string, namespace: string | undefined): string {
  return namespace
    ? `kubectl apply -f ${role.file} && kubectl create rolebinding ${role.name}-${user} -n ${namespace} --clusterrole=${role.name} --user=${user}`
    : `kubectl apply -f ${role.file} && kubectl create clusterrolebinding ${role.name}-${user} --clusterrole=${role.name} --user=${user}`;
}
