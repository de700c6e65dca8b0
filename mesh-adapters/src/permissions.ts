/**
 * What a session needs to be allowed, before it writes anything: from the adapter's list calls and
 * the kinds it may write. The preflight asks the apiserver (SelfSubjectAccessReview) about each and
 * fails with every missing one at once, so the cluster is never left half-routed by a 403.
 */
import type { MeshAdapter } from './adapter.ts';
import { QUERIES } from './adapter.ts';
import { PermissionDeniedError } from './errors.ts';
import { groupOf } from './k8s-object.ts';
import type { ResourceAttributes } from './kube-client.ts';
import type { SessionIntent } from './session-intent.ts';

const WRITE_VERBS = ['create', 'update', 'delete'] as const;

function writes(
  query: { apiVersion: string; resource: string },
  namespace: string | undefined,
): ResourceAttributes[] {
  return WRITE_VERBS.map((verb) => {
    const a: ResourceAttributes = { verb, group: groupOf(query.apiVersion), resource: query.resource };
    if (namespace !== undefined) a.namespace = namespace;
    return a;
  });
}

export function requiredPermissions(
  adapter: MeshAdapter,
  intent: SessionIntent,
  options: { envoyFilterNamespace?: string } = {},
): ResourceAttributes[] {
  const out: ResourceAttributes[] = [];
  for (const q of adapter.queries(intent)) {
    const a: ResourceAttributes = { verb: 'list', group: groupOf(q.apiVersion), resource: q.resource };
    if (q.namespace !== undefined) a.namespace = q.namespace;
    out.push(a);
  }
  out.push(...writes(QUERIES.leases, intent.lease.namespace), {
    verb: 'list',
    group: 'coordination.k8s.io',
    resource: 'leases',
    namespace: intent.lease.namespace,
  });
  const featureEnv = intent.mode.kind === 'feature-env';
  switch (adapter.kind) {
    case 'istio':
      // The VirtualService may live in any namespace (it is whichever governs the host).
      out.push(...writes(QUERIES.virtualServices, undefined));
      if (featureEnv) out.push(...writes(QUERIES.destinationRules, undefined));
      break;
    case 'istio-envoyfilter':
      out.push(...writes(QUERIES.envoyFilters, options.envoyFilterNamespace ?? 'istio-system'));
      if (featureEnv) out.push(...writes(QUERIES.destinationRules, undefined));
      break;
    case 'gateway-api':
      out.push(...writes(QUERIES.httpRoutes, intent.target.namespace));
      if (intent.agent.namespace !== intent.target.namespace) {
        out.push(...writes(QUERIES.referenceGrants, intent.agent.namespace));
      }
      break;
    case 'service':
      out.push(...writes(QUERIES.services, intent.target.namespace));
      break;
  }
  return out;
}

export interface AccessReviewer {
  selfSubjectAccessReview(attributes: ResourceAttributes): Promise<{ allowed: boolean; reason?: string }>;
}

/** Throws PermissionDeniedError naming every missing verb and resource; resolves when all are allowed. */
export async function preflight(
  reviewer: AccessReviewer,
  required: readonly ResourceAttributes[],
): Promise<void> {
  const answers = await Promise.all(
    required.map(async (a) => ({ a, r: await reviewer.selfSubjectAccessReview(a) })),
  );
  const missing = answers.filter(({ r }) => !r.allowed).map(({ a }) => a);
  if (missing.length === 0) return;
  const [first] = missing;
  if (first === undefined) return;
  const rest = missing
    .slice(1)
    .map(
      (m) =>
        `${m.verb} ${m.resource}${m.group ? `.${m.group}` : ''}${m.namespace ? ` in ${m.namespace}` : ''}`,
    );
  throw new PermissionDeniedError(
    first.verb,
    first.group,
    first.resource,
    first.namespace,
    rest.length > 0 ? `also missing: ${rest.join(', ')}` : '',
  );
}
