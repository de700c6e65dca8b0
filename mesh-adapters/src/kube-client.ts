/**
 * ClusterClient over the apiserver's REST API. Thin on purpose: client-node's typed APIs turn core
 * objects into classes (Dates for timestamps, dropped unknown fields), which would break exact
 * restoration; here objects stay the JSON the apiserver sent. `@kubernetes/client-node` is used
 * for what it is good at: reading kubeconfigs and applying their credentials to a request.
 */
import http from 'node:http';
import https from 'node:https';
import { DetourError } from '@detour/router/errors';
import type { KubeConfig } from '@kubernetes/client-node';
import type { ListQuery } from './adapter.ts';
import type { ClusterClient } from './applier.ts';
import { PermissionDeniedError } from './errors.ts';
import { WriteConflictError } from './in-memory-cluster.ts';
import type { KubeObject, ObjectRef } from './k8s-object.ts';
import { describeRef, groupOf } from './k8s-object.ts';

/**
 * The plural resource of every kind detour reads or writes (Namespace: for tests and `detour
 * doctor`; the agent's ServiceAccount, Role, RoleBinding, Deployment and Pod: `detour install` and
 * ephemeral agents).
 */
export const RESOURCES: Record<string, string> = {
  VirtualService: 'virtualservices',
  DestinationRule: 'destinationrules',
  EnvoyFilter: 'envoyfilters',
  HTTPRoute: 'httproutes',
  ReferenceGrant: 'referencegrants',
  Service: 'services',
  Lease: 'leases',
  Namespace: 'namespaces',
  ServiceAccount: 'serviceaccounts',
  Role: 'roles',
  RoleBinding: 'rolebindings',
  Deployment: 'deployments',
  PodDisruptionBudget: 'poddisruptionbudgets',
  Pod: 'pods',
};

export class KubeApiError extends DetourError {
  readonly status: number;
  constructor(status: number, what: string, message: string) {
    super('DETOUR_KUBE_API', `${what}: the apiserver answered ${status}: ${message}`);
    this.status = status;
  }
}

interface Response {
  status: number;
  body: unknown;
}

export interface KubeClientOptions {
  /** Shown in managedFields; default `detour`. */
  fieldManager?: string;
  /** Per-request timeout, default 30 s. */
  timeoutMs?: number;
}

export function kubeClient(
  kc: KubeConfig,
  options: KubeClientOptions = {},
): ClusterClient & {
  selfSubjectAccessReview(attributes: ResourceAttributes): Promise<{ allowed: boolean; reason?: string }>;
} {
  const cluster = kc.getCurrentCluster();
  if (cluster === null)
    throw new DetourError(
      'DETOUR_NO_KUBE_CONTEXT',
      'the kubeconfig has no current cluster: set one with kubectl config use-context',
    );
  const server = new URL(cluster.server);
  const fieldManager = options.fieldManager ?? 'detour';
  const timeoutMs = options.timeoutMs ?? 30_000;

  async function request(method: string, path: string, body?: unknown): Promise<Response> {
    const opts: https.RequestOptions = {
      method,
      protocol: server.protocol,
      hostname: server.hostname.replace(/^\[|\]$/g, ''),
      port: server.port || (server.protocol === 'https:' ? 443 : 80),
      path: `${server.pathname.replace(/\/$/, '')}${path}`,
      headers: {
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      timeout: timeoutMs,
    };
    await kc.applyToHTTPSOptions(opts);
    const transport = server.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = transport.request(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            // non-JSON error page: keep the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      });
      req.on('timeout', () =>
        req.destroy(new DetourError('kube-timeout', `${method} ${path}: no answer in ${timeoutMs} ms`)),
      );
      req.on('error', reject);
      if (body !== undefined) req.write(JSON.stringify(body));
      req.end();
    });
  }

  const messageOf = (r: Response) =>
    typeof r.body === 'object' && r.body !== null && 'message' in r.body
      ? String((r.body as { message: unknown }).message)
      : String(r.body);

  function collectionPath(apiVersion: string, resource: string, namespace: string | undefined): string {
    const prefix = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    return namespace === undefined
      ? `${prefix}/${resource}`
      : `${prefix}/namespaces/${encodeURIComponent(namespace)}/${resource}`;
  }

  function resourceOf(kind: string): string {
    const resource = RESOURCES[kind];
    if (resource === undefined)
      throw new DetourError('unknown-kind', `detour does not write ${kind} objects`);
    return resource;
  }

  function objectPath(ref: ObjectRef): string {
    return `${collectionPath(ref.apiVersion, resourceOf(ref.kind), ref.namespace)}/${encodeURIComponent(ref.name)}`;
  }

  function fail(
    r: Response,
    verb: string,
    ref: { apiVersion: string; kind: string; namespace?: string; name?: string },
  ): never {
    const resource = RESOURCES[ref.kind] ?? ref.kind;
    if (r.status === 403)
      throw new PermissionDeniedError(verb, groupOf(ref.apiVersion), resource, ref.namespace, messageOf(r));
    const what = ref.name
      ? describeRef(ref as ObjectRef)
      : `${resource}${ref.namespace ? ` in ${ref.namespace}` : ''}`;
    throw new KubeApiError(r.status, `${verb} ${what}`, messageOf(r));
  }

  return {
    async list(query: ListQuery) {
      const items: KubeObject[] = [];
      let next: string | undefined;
      do {
        const qs = new URLSearchParams({ limit: '500', ...(next ? { continue: next } : {}) });
        const r = await request(
          'GET',
          `${collectionPath(query.apiVersion, query.resource, query.namespace)}?${qs}`,
        );
        // A CRD that is not installed lists as 404: there are none of those objects.
        if (r.status === 404) return [];
        if (r.status !== 200) fail(r, 'list', query);
        const list = r.body as { items?: KubeObject[]; metadata?: { continue?: string } };
        for (const item of list.items ?? []) {
          // Lists of built-in kinds leave apiVersion and kind out of each item.
          items.push({
            ...item,
            apiVersion: item.apiVersion || query.apiVersion,
            kind: item.kind || query.kind,
          });
        }
        next = list.metadata?.continue || undefined;
      } while (next !== undefined);
      return items;
    },

    async create(object) {
      const ref = {
        apiVersion: object.apiVersion,
        kind: object.kind,
        namespace: object.metadata.namespace,
        name: object.metadata.name,
      };
      const path = `${collectionPath(object.apiVersion, resourceOf(object.kind), object.metadata.namespace)}?fieldManager=${fieldManager}`;
      const r = await request('POST', path, object);
      if (r.status === 409) throw new WriteConflictError(ref as ObjectRef, 'already exists');
      if (r.status !== 201 && r.status !== 200) fail(r, 'create', ref);
      return r.body as KubeObject;
    },

    async replace(object) {
      const ref: ObjectRef = { apiVersion: object.apiVersion, kind: object.kind, name: object.metadata.name };
      if (object.metadata.namespace !== undefined) ref.namespace = object.metadata.namespace;
      const r = await request('PUT', `${objectPath(ref)}?fieldManager=${fieldManager}`, object);
      if (r.status === 409) throw new WriteConflictError(ref, messageOf(r));
      if (r.status === 404) throw new WriteConflictError(ref, 'not found');
      if (r.status !== 200) fail(r, 'update', ref);
      return r.body as KubeObject;
    },

    async delete(ref, preconditions) {
      const body = {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        preconditions,
        propagationPolicy: 'Background',
      };
      const r = await request('DELETE', objectPath(ref), body);
      if (r.status === 404) return;
      if (r.status === 409) throw new WriteConflictError(ref, messageOf(r));
      if (r.status !== 200 && r.status !== 202) fail(r, 'delete', ref);
    },

    async selfSubjectAccessReview(attributes) {
      const review = {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SelfSubjectAccessReview',
        spec: { resourceAttributes: attributes },
      };
      const r = await request('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', review);
      if (r.status !== 201 && r.status !== 200) {
        fail(r, 'create', { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview' });
      }
      const status = (r.body as { status?: { allowed?: boolean; reason?: string } }).status ?? {};
      const out: { allowed: boolean; reason?: string } = { allowed: status.allowed === true };
      if (status.reason) out.reason = status.reason;
      return out;
    },
  };
}

/** SelfSubjectAccessReview's resourceAttributes. */
export interface ResourceAttributes {
  verb: string;
  group: string;
  resource: string;
  /** e.g. `portforward` of `pods` */
  subresource?: string;
  namespace?: string;
}

export { PermissionDeniedError };
