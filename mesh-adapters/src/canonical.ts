/**
 * Exactness: "the object is as it was" is judged on canonical JSON of what people and controllers
 * care about — `spec`, labels and annotations — not on resourceVersion, managedFields or status,
 * which the apiserver rewrites on every write.
 */
import type { KubeObject } from './k8s-object.ts';

/** JSON with object keys sorted at every level; array order is meaningful and kept. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/**
 * The part of an object that exactness is about. An empty labels/annotations map is the same as
 * none: the apiserver omits empty maps in ObjectMeta, so both read back identically.
 */
export function canonicalView(object: KubeObject | undefined): unknown {
  if (object === undefined) return null;
  const labels = object.metadata.labels ?? {};
  const annotations = object.metadata.annotations ?? {};
  return {
    kind: object.kind,
    namespace: object.metadata.namespace ?? '',
    name: object.metadata.name,
    labels: Object.keys(labels).length === 0 ? undefined : labels,
    annotations: Object.keys(annotations).length === 0 ? undefined : annotations,
    spec: object.spec,
  };
}

export function canonicalObject(object: KubeObject | undefined): string {
  return canonicalJson(canonicalView(object));
}

/** A change someone else made while a session was live, expressed as data. */
export type Edit =
  | { op: 'set'; path: readonly (string | number)[]; value: unknown }
  | { op: 'remove'; path: readonly (string | number)[] };

/** Applies edits to a copy of `object` (paths start below the object: `['spec', 'http', 1, 'timeout']`). */
export function applyEdits<T extends KubeObject>(object: T, edits: readonly Edit[]): T {
  const copy = structuredClone(object);
  for (const edit of edits) {
    if (edit.path.length === 0) throw new Error('an edit path must not be empty');
    let node: unknown = copy;
    for (let i = 0; i < edit.path.length - 1; i++) {
      const key = edit.path[i] as string | number;
      const container = node as Record<string | number, unknown>;
      if (container[key] === undefined || container[key] === null) {
        container[key] = typeof edit.path[i + 1] === 'number' ? [] : {};
      }
      node = container[key];
    }
    const last = edit.path[edit.path.length - 1] as string | number;
    if (edit.op === 'set') (node as Record<string | number, unknown>)[last] = structuredClone(edit.value);
    else if (Array.isArray(node) && typeof last === 'number') node.splice(last, 1);
    else delete (node as Record<string | number, unknown>)[last];
  }
  return copy;
}

/** Paths (JSON-pointer-like) where two canonical views differ: what a failed exactness check reports. */
export function diffPaths(a: unknown, b: unknown, path = ''): string[] {
  const ca = sortKeys(a);
  const cb = sortKeys(b);
  if (JSON.stringify(ca) === JSON.stringify(cb)) return [];
  if (Array.isArray(ca) && Array.isArray(cb)) {
    if (ca.length !== cb.length) return [`${path || '/'} (length ${ca.length} ≠ ${cb.length})`];
    return ca.flatMap((v, i) => diffPaths(v, cb[i], `${path}/${i}`));
  }
  if (isPlainObject(ca) && isPlainObject(cb)) {
    const keys = [...new Set([...Object.keys(ca), ...Object.keys(cb)])].sort();
    return keys.flatMap((k) => diffPaths(ca[k], cb[k], `${path}/${k}`));
  }
  return [path || '/'];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export type ExactnessResult = { ok: true } | { ok: false; differences: string[] };

/**
 * True when `after` equals `before` with `othersEdits` applied: detour left nothing behind and took
 * nothing away. `after === undefined` means the object is gone, which is exact only if it was gone
 * before as well (objects detour created).
 */
export function restoredExactly(
  before: KubeObject | undefined,
  after: KubeObject | undefined,
  othersEdits: readonly Edit[] = [],
): ExactnessResult {
  const expected = before === undefined ? undefined : applyEdits(before, othersEdits);
  const differences = diffPaths(canonicalView(expected), canonicalView(after));
  return differences.length === 0 ? { ok: true } : { ok: false, differences };
}
