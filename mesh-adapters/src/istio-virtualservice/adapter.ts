/**
 * `--mesh istio`: the session's route goes first in the `http` list of the VirtualService that
 * sidecars use for the target host; every other route stays, in order, untouched. No such
 * VirtualService: detour creates one with the session route and a default route to the host, and
 * deletes it when the last session leaves.
 */
import type { ListQuery, MeshAdapter, ObservedObjects } from '../adapter.ts';
import { inNamespace, QUERIES } from '../adapter.ts';
import { canonicalJson } from '../canonical.ts';
import { UneditableObjectError } from '../errors.ts';
import { gitOpsOwner } from '../gitops.ts';
import { parseServiceHost } from '../hosts.ts';
import { isKind, refOf } from '../k8s-object.ts';
import type { Plan } from '../plan.ts';
import { emptyPlan, pushWrite, writeFor } from '../plan.ts';
import type { SessionIntent } from '../session-intent.ts';
import { routeName, validateIntent } from '../session-intent.ts';
import {
  addOwner,
  isManagedByDetour,
  leaseKey,
  leaseOwnerReference,
  managedLabels,
  readSessions,
  removeOwnerByName,
  writeSessions,
} from '../session-records.ts';
import { planSubset, planSubsetRevert } from './destination-rule.ts';
import { governingVirtualService, virtualServicesOf } from './governing.ts';
import { buildSessionRoute, defaultRouteFor } from './route.ts';
import type { HTTPRoute, L4Route, VirtualService } from './types.ts';
import { VS_API_VERSION } from './types.ts';

export interface IstioVirtualServiceOptions {
  /** Edit VirtualServices that Argo CD or Flux own (they will likely revert the edit). Default false. */
  allowGitOpsOwned?: boolean;
}

export function createdVirtualServiceName(host: string): string {
  return `detour-${parseServiceHost(host).service}`;
}

/** The name of the default route in a VirtualService detour creates. */
export const CREATED_DEFAULT_ROUTE = 'detour-default';

export function createIstioVirtualServiceAdapter(options: IstioVirtualServiceOptions = {}): MeshAdapter {
  return {
    kind: 'istio',
    queries(intent: SessionIntent): ListQuery[] {
      // VirtualServices for a host may live in any namespace; DestinationRules too.
      const queries: ListQuery[] = [inNamespace(QUERIES.virtualServices)];
      if (intent.mode.kind === 'feature-env') queries.push(inNamespace(QUERIES.destinationRules));
      return queries;
    },
    revertQueries: () => [inNamespace(QUERIES.virtualServices), inNamespace(QUERIES.destinationRules)],
    plan: (observed, intent) => planVirtualService(observed, intent, options),
    planRevert: planVirtualServiceRevert,
  };
}

export function planVirtualService(
  observed: ObservedObjects,
  intent: SessionIntent,
  options: IstioVirtualServiceOptions = {},
): Plan {
  intent = validateIntent(intent);
  const plan = emptyPlan();
  const governing = governingVirtualService(observed, intent.target.host);
  plan.warnings.push(...governing.warnings);
  const current = governing.virtualService;
  if (current !== undefined) checkEditable(current, intent, options);

  // Make-before-break: the subset must be in the proxies before a route names it.
  pushWrite(plan, planSubset(observed, intent, 'config-propagated'));

  const name = routeName(intent.sessionId);
  const record = { lease: leaseKey(intent.lease), holder: intent.holder };
  const owner = leaseOwnerReference(intent.lease, intent.target.namespace);

  if (current === undefined) {
    const defaultRoute: HTTPRoute = {
      name: CREATED_DEFAULT_ROUTE,
      route: [{ destination: { host: intent.target.host } }],
    };
    const vs: VirtualService = {
      apiVersion: VS_API_VERSION,
      kind: 'VirtualService',
      metadata: {
        name: createdVirtualServiceName(intent.target.host),
        namespace: intent.target.namespace,
        labels: managedLabels(),
      },
      spec: {
        hosts: [intent.target.host],
        http: [buildSessionRoute(intent, undefined, defaultRoute), defaultRoute],
      },
    };
    writeSessions(vs, { sessions: { [intent.sessionId]: record } });
    addOwner(vs, owner);
    pushWrite(
      plan,
      writeFor(
        undefined,
        vs,
        `no VirtualService routes ${intent.target.host}: one with route ${name} and a default route`,
      ),
    );
    return plan;
  }

  const desired = structuredClone(current);
  desired.spec ??= {};
  const annotation = readSessions(desired);
  const http = desired.spec.http ?? [];
  if (desired.spec.http === undefined) annotation.added = { ...annotation.added, http: true };
  const others = http.filter((r) => r.name !== name);
  const route = buildSessionRoute(intent, desired.spec, defaultRouteFor(others, intent.target.port));
  if (intent.mode.kind === 'mirror') checkMirrorable(current, others, intent.target.port);
  const at = http.findIndex((r) => r.name === name);
  // Level-triggered: a route already in place keeps its position (sessions added later sit above
  // it; moving it back to the top on every re-plan would churn the object for everyone).
  if (at >= 0) http[at] = route;
  else http.unshift(route);
  desired.spec.http = http;
  annotation.sessions[intent.sessionId] = record;
  writeSessions(desired, annotation);
  if (isManagedByDetour(desired)) addOwner(desired, owner);
  pushWrite(
    plan,
    writeFor(
      current,
      desired,
      `route ${name} first in http of VirtualService for ${intent.target.host}:${intent.target.port}`,
    ),
  );
  return plan;
}

function checkEditable(vs: VirtualService, intent: SessionIntent, options: IstioVirtualServiceOptions): void {
  const ref = refOf(vs);
  const owner = gitOpsOwner(vs);
  if (owner !== undefined && !options.allowGitOpsOwned && !isManagedByDetour(vs)) {
    throw new UneditableObjectError(
      ref,
      `metadata (${owner.evidence})`,
      `it is reconciled by ${owner.tool === 'argocd' ? 'Argo CD' : 'Flux'}, which would revert detour's route`,
      'use --mesh istio-envoyfilter (the default for GitOps-owned VirtualServices), which leaves this object alone',
    );
  }
  const port = intent.target.port;
  const l4Claims = (routes: L4Route[] | undefined) =>
    (routes ?? []).some(
      (r) =>
        (r.match ?? []).length === 0 || (r.match ?? []).some((m) => m.port === undefined || m.port === port),
    );
  const http = vs.spec?.http ?? [];
  for (const [field, routes] of [
    ['spec.tcp', vs.spec?.tcp],
    ['spec.tls', vs.spec?.tls],
  ] as const) {
    if (l4Claims(routes) && http.length === 0) {
      throw new UneditableObjectError(
        ref,
        field,
        `port ${port} of ${intent.target.host} is routed as ${field === 'spec.tcp' ? 'TCP' : 'TLS passthrough'}, so requests carry no headers the mesh can route on`,
        'name the Service port http-* (or set appProtocol: http) so Istio routes it as HTTP, or pick an HTTP port',
      );
    }
  }
  const name = routeName(intent.sessionId);
  const clash = http.find((r) => r.name === name);
  if (clash !== undefined && readSessions(vs).sessions[intent.sessionId] === undefined) {
    throw new UneditableObjectError(
      ref,
      `spec.http[name=${name}]`,
      `a route named ${name} exists but no detour session ${intent.sessionId} is recorded on the object (${'detour.dev/sessions'})`,
      'rename that route, or start the session with another id',
    );
  }
}

function checkMirrorable(vs: VirtualService, http: readonly HTTPRoute[], port: number): void {
  const base = defaultRouteFor(http, port);
  if (base?.delegate !== undefined) {
    const index = (vs.spec?.http ?? []).findIndex((r) => canonicalJson(r) === canonicalJson(base));
    throw new UneditableObjectError(
      refOf(vs),
      `spec.http[${index}].delegate`,
      'the default route delegates to another VirtualService, so there is no destination to mirror from',
      'mirror with --mesh istio-envoyfilter, or steal instead of mirroring',
    );
  }
}

export function planVirtualServiceRevert(observed: ObservedObjects, sessionId: string): Plan {
  const plan = emptyPlan();
  const name = routeName(sessionId);
  for (const vs of virtualServicesOf(observed)) {
    const annotation = readSessions(vs);
    const record = annotation.sessions[sessionId];
    const http = vs.spec?.http ?? [];
    const hasRoute = http.some((r) => r.name === name);
    if (record === undefined && !hasRoute) continue;
    const desired = structuredClone(vs);
    desired.spec ??= {};
    if (desired.spec.http !== undefined) desired.spec.http = desired.spec.http.filter((r) => r.name !== name);
    delete annotation.sessions[sessionId];
    if (record !== undefined) removeOwnerByName(desired, record.lease.split('/')[1] ?? '');
    const noSessionsLeft = Object.keys(annotation.sessions).length === 0;
    if (noSessionsLeft && annotation.added?.http) {
      if (desired.spec.http?.length === 0) delete desired.spec.http;
      delete annotation.added.http;
      if (Object.keys(annotation.added).length === 0) delete annotation.added;
    }
    writeSessions(desired, annotation);
    const gone = isManagedByDetour(vs) && noSessionsLeft;
    pushWrite(
      plan,
      writeFor(
        vs,
        gone ? undefined : desired,
        gone ? `last session (${sessionId}) left the VirtualService detour created` : `remove route ${name}`,
      ),
    );
  }
  const subsetWrites = planSubsetRevert(observed, sessionId);
  if (subsetWrites.length > 0) {
    // Break before unmake: the route must be gone from the proxies before its subset goes.
    for (const write of plan.writes) write.barrier = 'config-propagated';
    plan.writes.push(...subsetWrites);
  }
  return plan;
}

export function isVirtualService(o: { apiVersion: string; kind: string }): boolean {
  return isKind(o as VirtualService, 'networking.istio.io', 'VirtualService');
}
