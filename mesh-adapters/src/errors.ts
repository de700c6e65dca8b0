/**
 * The errors the mesh adapters raise on purpose. Each names the object, the field and the fix, so
 * the CLI can print it as is; planners raise them before any write, so the cluster stays unchanged.
 */
import { DetourError, InvalidInputError } from '@detour/router/errors';
import { describeRef, type ObjectRef } from './k8s-object.ts';

/** A field of the session intent (a flag or config key) is invalid. */
export class InvalidIntentError extends InvalidInputError {
  readonly field: string;
  constructor(field: string, problem: string, fix: string) {
    super('DETOUR_INVALID_INTENT', `${field}: ${problem}. ${fix}`);
    this.field = field;
  }
}

/** An object in the cluster that an adapter cannot safely edit (or that forbids the mode asked for). */
export class UneditableObjectError extends DetourError {
  readonly object: ObjectRef;
  readonly field: string;
  constructor(object: ObjectRef, field: string, problem: string, fix: string) {
    super('DETOUR_UNEDITABLE_OBJECT', `${describeRef(object)}, field ${field}: ${problem}. Fix: ${fix}`);
    this.object = object;
    this.field = field;
  }
}

/** Nothing in the cluster serves the target host (no Service, no route). */
export class UnknownTargetError extends InvalidInputError {
  readonly host: string;
  constructor(host: string, detail: string, fix: string) {
    super('DETOUR_UNKNOWN_TARGET', `no Service serves ${host}: ${detail}. ${fix}`);
    this.host = host;
  }
}

/** The mode asked for cannot be expressed by this adapter (e.g. withoutHeaders in Gateway API). */
export class UnsupportedByAdapterError extends InvalidInputError {
  readonly adapter: string;
  readonly field: string;
  constructor(adapter: string, field: string, problem: string, fix: string) {
    super('DETOUR_UNSUPPORTED_BY_ADAPTER', `${field}: ${problem} with --mesh ${adapter}. ${fix}`);
    this.adapter = adapter;
    this.field = field;
  }
}

/** Another live session already routes the same filter on the same host and port. */
export class FilterHeldError extends DetourError {
  readonly holder: string;
  readonly since: string;
  readonly sessionId: string;
  constructor(params: {
    host: string;
    port: number;
    what: string;
    holder: string;
    since: string;
    sessionId: string;
  }) {
    super(
      'DETOUR_FILTER_HELD',
      `${params.what} on ${params.host}:${params.port} is already routed by session ${params.sessionId} ` +
        `of ${params.holder} since ${params.since}. Pick another header value (--header x-dev=<you>), ` +
        `or wait until that session ends (its Lease expires if its owner is gone; then \`detour clean\`).`,
    );
    this.holder = params.holder;
    this.since = params.since;
    this.sessionId = params.sessionId;
  }
}

/** The apiserver said no (403): names the verb, the resource and the fix. */
export class PermissionDeniedError extends DetourError {
  readonly verb: string;
  readonly resource: string;
  readonly namespace: string | undefined;
  constructor(verb: string, group: string, resource: string, namespace: string | undefined, detail = '') {
    super(
      'DETOUR_PERMISSION_DENIED',
      `not allowed to ${verb} ${resource}${group ? `.${group}` : ''}${namespace ? ` in namespace ${namespace}` : ' (all namespaces)'}` +
        `${detail ? ` (${detail})` : ''}. Ask an admin to bind the ClusterRole detour-developer ` +
        '(manifests/rbac/detour-developer.yaml) to you, or a Role with that rule for this namespace.',
    );
    this.verb = verb;
    this.resource = resource;
    this.namespace = namespace;
  }
}
