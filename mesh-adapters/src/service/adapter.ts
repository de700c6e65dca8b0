/**
 * `--mesh service` (no mesh): the target Service's selector is pointed at the agent pods and the
 * session's port at the agent's port; a shadow Service selects the original pods, and the agent
 * passes requests that match no session to it. Shared by all sessions on the Service: the first
 * records the original selector and ports on the Service, the last restores them.
 *
 * Restoring is a three-way merge per field: a port or selector that still is what detour wrote
 * goes back to the original; one that someone changed since keeps their change.
 */
import type { ListQuery, MeshAdapter, ObservedObjects } from '../adapter.ts';
import { inNamespace, QUERIES } from '../adapter.ts';
import { canonicalJson } from '../canonical.ts';
import { InvalidIntentError, UneditableObjectError, UnknownTargetError } from '../errors.ts';
import { parseServiceHost } from '../hosts.ts';
import type { KubeObject } from '../k8s-object.ts';
import { isKind, refOf } from '../k8s-object.ts';
import type { Plan } from '../plan.ts';
import { emptyPlan, pushWrite, writeFor } from '../plan.ts';
import type { SessionIntent } from '../session-intent.ts';
import { validateIntent } from '../session-intent.ts';
import type { SessionsAnnotation } from '../session-records.ts';
import {
  addOwner,
  leaseKey,
  leaseOwnerReference,
  managedLabels,
  readSessions,
  removeOwnerByName,
  writeSessions,
} from '../session-records.ts';

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
  nodePort?: number;
  [field: string]: unknown;
}

export interface ServiceSpec {
  type?: string;
  selector?: Record<string, string>;
  ports?: ServicePort[];
  clusterIP?: string;
  [field: string]: unknown;
}

export type Service = KubeObject<ServiceSpec>;

/** Label on the shadow Service naming the Service it stands in for. */
export const SHADOW_OF_LABEL = 'detour.dev/shadow-of';

export function shadowServiceName(service: string): string {
  const suffix = '-detour-shadow';
  return `${service.slice(0, 63 - suffix.length)}${suffix}`;
}

export function createServiceAdapter(): MeshAdapter {
  return {
    kind: 'service',
    queries: (intent: SessionIntent): ListQuery[] => {
      const queries = [inNamespace(QUERIES.services, intent.target.namespace)];
      if (intent.agent.namespace !== intent.target.namespace) {
        queries.push(inNamespace(QUERIES.services, intent.agent.namespace));
      }
      return queries;
    },
    revertQueries: () => [inNamespace(QUERIES.services)],
    plan: planServiceSelector,
    planRevert: planServiceSelectorRevert,
  };
}

function servicesOf(observed: ObservedObjects): Service[] {
  return observed.filter((o) => isKind(o, '', 'Service')) as Service[];
}

const portKey = (p: ServicePort) => `${p.name ?? ''}/${p.port}`;

/** Original ports with each session's port pointed at its agent port. */
function portsFor(original: ServicePort[], annotation: SessionsAnnotation): ServicePort[] {
  return original.map((p) => {
    const session = Object.values(annotation.sessions).find((r) => r.port === p.port);
    return session?.agentPort !== undefined
      ? { ...structuredClone(p), targetPort: session.agentPort }
      : structuredClone(p);
  });
}

export function planServiceSelector(observed: ObservedObjects, intent: SessionIntent): Plan {
  intent = validateIntent(intent);
  const plan = emptyPlan();
  const { service } = parseServiceHost(intent.target.host);
  const services = servicesOf(observed);
  const svc = services.find(
    (s) => s.metadata.name === service && s.metadata.namespace === intent.target.namespace,
  );
  if (svc === undefined) {
    throw new UnknownTargetError(
      intent.target.host,
      `there is no Service ${service} in namespace ${intent.target.namespace}`,
      `Check the target (kubectl get svc -n ${intent.target.namespace}).`,
    );
  }
  const ref = refOf(svc);
  if (
    svc.spec?.type === 'ExternalName' ||
    svc.spec?.selector === undefined ||
    Object.keys(svc.spec.selector).length === 0
  ) {
    throw new UneditableObjectError(
      ref,
      'spec.selector',
      'the Service has no selector (its endpoints are managed by hand or it is an ExternalName), so it cannot be pointed at the agent',
      'target the workload behind it directly, or use a mesh adapter',
    );
  }
  const port = (svc.spec.ports ?? []).find((p) => p.port === intent.target.port);
  if (port === undefined) {
    throw new InvalidIntentError(
      'target.port',
      `Service ${intent.target.namespace}/${service} has no port ${intent.target.port}`,
      `Pick one of ${(svc.spec.ports ?? []).map((p) => p.port).join(', ')}.`,
    );
  }
  const agentSelector =
    intent.agent.selector ??
    services.find(
      (s) => s.metadata.name === intent.agent.name && s.metadata.namespace === intent.agent.namespace,
    )?.spec?.selector;
  if (agentSelector === undefined || Object.keys(agentSelector).length === 0) {
    throw new InvalidIntentError(
      'agent.selector',
      `the selector of agent Service ${intent.agent.namespace}/${intent.agent.name} is unknown`,
      'Create the agent first, or give agent.selector.',
    );
  }
  if (intent.agent.namespace !== intent.target.namespace) {
    throw new InvalidIntentError(
      'agent.namespace',
      `a Service selects pods of its own namespace only; the agent is in ${intent.agent.namespace}`,
      `Run a per-session agent in ${intent.target.namespace} for --mesh service.`,
    );
  }
  if (intent.mode.kind !== 'steal' && intent.mode.kind !== 'steal-all') {
    throw new InvalidIntentError(
      'mode',
      `${intent.mode.kind} needs a mesh; without one the agent only steals`,
      'Use steal (--header) or install a mesh.',
    );
  }

  const desired = structuredClone(svc);
  const spec = desired.spec as ServiceSpec;
  const annotation = readSessions(desired);
  annotation.original ??= {
    selector: { ...svc.spec.selector },
    ports: structuredClone(svc.spec.ports ?? []),
  };
  const held = Object.entries(annotation.sessions).find(
    ([id, r]) =>
      id !== intent.sessionId && r.port === intent.target.port && r.agentPort !== intent.agent.port,
  );
  if (held !== undefined) {
    throw new UneditableObjectError(
      ref,
      `spec.ports[port=${intent.target.port}].targetPort`,
      `session ${held[0]} already points port ${intent.target.port} at agent port ${held[1].agentPort}, not ${intent.agent.port}`,
      'use the same agent (it serves several sessions on one port)',
    );
  }
  annotation.sessions[intent.sessionId] = {
    lease: leaseKey(intent.lease),
    holder: intent.holder,
    port: intent.target.port,
    agentPort: intent.agent.port,
  };
  spec.selector = { ...agentSelector };
  const originalPorts = annotation.original.ports as ServicePort[];
  // Ports added by someone else since the first session are kept as they are.
  const known = new Set(originalPorts.map(portKey));
  spec.ports = [
    ...portsFor(originalPorts, annotation),
    ...(svc.spec.ports ?? []).filter((p) => !known.has(portKey(p))),
  ];
  annotation.written = { selector: { ...spec.selector }, ports: structuredClone(spec.ports) };
  writeSessions(desired, annotation);

  const shadowName = shadowServiceName(service);
  const existingShadow = services.find(
    (s) => s.metadata.name === shadowName && s.metadata.namespace === intent.target.namespace,
  );
  const shadow: Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: shadowName,
      namespace: intent.target.namespace,
      labels: { ...managedLabels(), [SHADOW_OF_LABEL]: service },
    },
    spec: {
      selector: { ...(annotation.original.selector ?? {}) },
      ports: originalPorts.map((p) => {
        const out: ServicePort = { port: p.port };
        if (p.name !== undefined) out.name = p.name;
        if (p.targetPort !== undefined) out.targetPort = p.targetPort;
        if (p.protocol !== undefined) out.protocol = p.protocol;
        if (p.appProtocol !== undefined) out.appProtocol = p.appProtocol;
        return out;
      }),
    },
  };
  if (existingShadow !== undefined) {
    // Keep what the apiserver filled in (clusterIP, defaults) and the other sessions' owners.
    const merged = structuredClone(existingShadow);
    merged.metadata.labels = { ...merged.metadata.labels, ...shadow.metadata.labels };
    (merged.spec as ServiceSpec).selector = shadow.spec?.selector ?? {};
    addOwner(merged, leaseOwnerReference(intent.lease, intent.target.namespace));
    pushWrite(plan, writeFor(existingShadow, merged, `shadow Service for the original pods of ${service}`));
  } else {
    addOwner(shadow, leaseOwnerReference(intent.lease, intent.target.namespace));
    pushWrite(
      plan,
      writeFor(undefined, shadow, `shadow Service for the original pods of ${service}`, 'config-propagated'),
    );
  }
  pushWrite(
    plan,
    writeFor(
      svc,
      desired,
      `point Service ${service} at the agent (port ${intent.target.port} → ${intent.agent.port})`,
    ),
  );
  const otherPorts = originalPorts.filter((p) => p.port !== intent.target.port);
  if (otherPorts.length > 0 && annotation.sessions[intent.sessionId] !== undefined) {
    plan.warnings.push(
      `Service ${service} also serves port(s) ${otherPorts.map((p) => p.port).join(', ')}: their traffic now reaches the agent pods too, which relay it to ${shadowName}.`,
    );
  }
  return plan;
}

export function planServiceSelectorRevert(observed: ObservedObjects, sessionId: string): Plan {
  const plan = emptyPlan();
  const services = servicesOf(observed);
  for (const svc of services) {
    const annotation = readSessions(svc);
    const record = annotation.sessions[sessionId];
    if (record === undefined || annotation.original === undefined) continue;
    const desired = structuredClone(svc);
    desired.spec ??= {};
    const spec = desired.spec;
    delete annotation.sessions[sessionId];
    const last = Object.keys(annotation.sessions).length === 0;
    const originalPorts = (annotation.original.ports ?? []) as ServicePort[];
    const writtenPorts = (annotation.written?.ports ?? []) as ServicePort[];
    // What detour wants now: the original (last session) or the original with the remaining sessions' ports.
    const wantedPorts = last ? originalPorts : portsFor(originalPorts, annotation);
    const sameJson = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);
    spec.ports = (spec.ports ?? []).map((p) => {
      const written = writtenPorts.find((w) => portKey(w) === portKey(p));
      const wanted = wantedPorts.find((w) => portKey(w) === portKey(p));
      return written !== undefined && wanted !== undefined && sameJson(written, p)
        ? structuredClone(wanted)
        : p;
    });
    if (last) {
      if (sameJson(spec.selector, annotation.written?.selector))
        spec.selector = { ...annotation.original.selector };
      else
        plan.warnings.push(
          `Service ${svc.metadata.name}: its selector was changed by someone else; kept as is.`,
        );
      delete annotation.original;
      delete annotation.written;
    } else {
      annotation.written = { ...annotation.written, ports: structuredClone(spec.ports) };
    }
    writeSessions(desired, annotation);
    pushWrite(
      plan,
      writeFor(
        svc,
        desired,
        last ? 'restore the original selector and ports' : `take session ${sessionId}'s port back`,
      ),
    );

    const shadow = services.find(
      (s) =>
        s.metadata.labels?.[SHADOW_OF_LABEL] === svc.metadata.name &&
        s.metadata.namespace === svc.metadata.namespace,
    );
    if (shadow !== undefined) {
      if (last)
        pushWrite(plan, writeFor(shadow, undefined, 'no session left on the Service: its shadow goes'));
      else {
        const kept = structuredClone(shadow);
        removeOwnerByName(kept, record.lease.split('/')[1] ?? '');
        pushWrite(plan, writeFor(shadow, kept, `drop session ${sessionId}'s owner reference`));
      }
    }
  }
  return plan;
}
