/**
 * What one session wants routed, independent of the mesh: the input of every planner. The CLI
 * builds it from flags and config; the planners turn it into mesh objects.
 */
import type { RouteFilter, StringMatch } from '@detour/router/match/filter';
import { validateFilter } from '@detour/router/match/validate-filter';
import { InvalidIntentError } from './errors.ts';

export type { RouteFilter, StringMatch };

export interface SessionTarget {
  /** Namespace of the target Service. */
  namespace: string;
  /** FQDN of the target Service: `orders.staging.svc.cluster.local`. */
  host: string;
  /** The Service port whose traffic the session takes. */
  port: number;
}

export type SessionMode =
  /** Requests matching the filter go to the agent instead of the real pods. */
  | { kind: 'steal'; filter: RouteFilter }
  /** Every request goes to the agent: needs an explicit flag, so it is its own mode. */
  | { kind: 'steal-all' }
  /** Requests matching the filter go where they went before, and a copy goes to the agent. */
  | { kind: 'mirror'; filter: RouteFilter; percent?: number }
  /**
   * Requests matching the filter go to the pods of a feature environment (a DestinationRule
   * subset of the target host), not to the agent.
   */
  | { kind: 'feature-env'; filter: RouteFilter; subset: { name: string; labels: Record<string, string> } };

export interface AgentService {
  name: string;
  namespace: string;
  /** The agent Service port that receives this session's mesh-routed requests. */
  port: number;
  /** The agent pods' labels (the `service` adapter points the target Service at them). */
  selector?: Record<string, string>;
}

export interface LeaseRef {
  name: string;
  namespace: string;
  /** Known once the Lease exists; objects detour creates then carry an ownerReference to it. */
  uid?: string;
}

export interface SessionIntent {
  /** A DNS label, at most 40 characters: it becomes part of route and object names. */
  sessionId: string;
  target: SessionTarget;
  mode: SessionMode;
  agent: AgentService;
  /** `user@host`: shown to whoever meets this session's routes. */
  holder: string;
  lease: LeaseRef;
}

/** `detour-<session>`: the name of the route (or object) a session adds. */
export function routeName(sessionId: string): string {
  return `detour-${sessionId}`;
}

export function sessionFilter(mode: SessionMode): RouteFilter | undefined {
  return mode.kind === 'steal-all' ? undefined : mode.filter;
}

const SESSION_ID = /^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Throws InvalidIntentError (or the router's InvalidFilterError) naming the first bad field;
 * returns the intent with its filter normalised (header names lower-cased).
 */
export function validateIntent(intent: SessionIntent): SessionIntent {
  if (!SESSION_ID.test(intent.sessionId)) {
    throw new InvalidIntentError(
      'sessionId',
      `${JSON.stringify(intent.sessionId)} is not a DNS label of at most 40 characters`,
      'Use lower-case letters, digits and "-", starting and ending with a letter or digit.',
    );
  }
  validateNamespace('target.namespace', intent.target.namespace);
  validateNamespace('agent.namespace', intent.agent.namespace);
  validateNamespace('lease.namespace', intent.lease.namespace);
  if (!DNS_LABEL.test(intent.agent.name)) {
    throw new InvalidIntentError(
      'agent.name',
      `${JSON.stringify(intent.agent.name)} is not a Service name`,
      'Use a DNS label.',
    );
  }
  if (!DNS_SUBDOMAIN.test(intent.lease.name) || intent.lease.name.length > 253) {
    throw new InvalidIntentError(
      'lease.name',
      `${JSON.stringify(intent.lease.name)} is not an object name`,
      'Use a DNS subdomain.',
    );
  }
  const hostParts = intent.target.host.split('.');
  if (!DNS_SUBDOMAIN.test(intent.target.host) || hostParts.length < 4 || hostParts[2] !== 'svc') {
    throw new InvalidIntentError(
      'target.host',
      `${JSON.stringify(intent.target.host)} is not a Service FQDN`,
      'Give <service>.<namespace>.svc.<cluster domain>, e.g. orders.staging.svc.cluster.local.',
    );
  }
  if (hostParts[1] !== intent.target.namespace) {
    throw new InvalidIntentError(
      'target.host',
      `${intent.target.host} is not in namespace ${intent.target.namespace}`,
      'Make target.namespace the second label of target.host.',
    );
  }
  validatePort('target.port', intent.target.port);
  validatePort('agent.port', intent.agent.port);
  if (!/^[^@\s]+@[^@\s]+$/.test(intent.holder)) {
    throw new InvalidIntentError(
      'holder',
      `${JSON.stringify(intent.holder)} is not user@host`,
      'Set it as <user>@<host>.',
    );
  }
  const mode = intent.mode;
  let normalized = intent;
  if (mode.kind !== 'steal-all') {
    // The router's validator: the agent evaluates the same filter, so both ends accept the same
    // ones. It lower-cases header names and refuses a filter without conditions (that is --all).
    const filter = validateFilter(mode.filter, `session ${intent.sessionId}`);
    normalized = { ...intent, mode: { ...mode, filter } as SessionMode };
  }
  if (mode.kind === 'mirror' && mode.percent !== undefined && !(mode.percent > 0 && mode.percent <= 100)) {
    throw new InvalidIntentError(
      'mirror.percent',
      `${mode.percent} is not in (0, 100]`,
      'Give a percentage above 0.',
    );
  }
  if (mode.kind === 'feature-env') {
    if (!DNS_LABEL.test(mode.subset.name)) {
      throw new InvalidIntentError(
        'subset.name',
        `${JSON.stringify(mode.subset.name)} is not a DNS label`,
        'Use a DNS label.',
      );
    }
    if (Object.keys(mode.subset.labels).length === 0) {
      throw new InvalidIntentError(
        'subset.labels',
        'a subset without labels selects every pod of the host',
        'Give the labels of the environment pods, e.g. env=feature-x.',
      );
    }
  }
  return normalized;
}

function validateNamespace(field: string, value: string): void {
  if (!DNS_LABEL.test(value)) {
    throw new InvalidIntentError(
      field,
      `${JSON.stringify(value)} is not a namespace name`,
      'Use a DNS label.',
    );
  }
}

function validatePort(field: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new InvalidIntentError(field, `${value} is not a port`, 'Give an integer in 1..65535.');
  }
}
