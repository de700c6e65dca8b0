import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyEdits, canonicalJson, canonicalObject, diffPaths, restoredExactly } from '../src/canonical.ts';
import type { KubeObject } from '../src/k8s-object.ts';

const base: KubeObject = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'orders', namespace: 'staging', resourceVersion: '1', labels: { a: '1' } },
  spec: { hosts: ['orders'], http: [{ name: 'x', timeout: '1s' }] },
  status: { observedGeneration: 1 },
};

describe('canonical JSON', () => {
  test('sorts keys at every level and keeps array order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [3, 1], c: null } }), '{"a":{"c":null,"d":[3,1]},"b":1}');
  });

  test('ignores resourceVersion, status and managed fields; empty labels equal no labels', () => {
    const moved = structuredClone(base);
    moved.metadata.resourceVersion = '99';
    moved.metadata.managedFields = [{ manager: 'kubectl' }];
    moved.status = { observedGeneration: 7 };
    assert.equal(canonicalObject(moved), canonicalObject(base));
    const a = structuredClone(base);
    const b = structuredClone(base);
    delete a.metadata.annotations;
    b.metadata.annotations = {};
    assert.equal(canonicalObject(a), canonicalObject(b));
  });
});

describe('restoredExactly', () => {
  test('identical: ok; a changed field: the path is reported', () => {
    assert.deepEqual(restoredExactly(base, structuredClone(base)), { ok: true });
    const changed = applyEdits(base, [{ op: 'set', path: ['spec', 'http', 0, 'timeout'], value: '2s' }]);
    assert.deepEqual(restoredExactly(base, changed), { ok: false, differences: ['/spec/http/0/timeout'] });
  });

  test("others' edits are expected, and only them", () => {
    const edits = [
      { op: 'set', path: ['spec', 'http', 0, 'retries'], value: { attempts: 2 } },
      { op: 'remove', path: ['metadata', 'labels', 'a'] },
    ] as const;
    const after = applyEdits(base, edits);
    assert.deepEqual(restoredExactly(base, after, edits), { ok: true });
    assert.equal(restoredExactly(base, after).ok, false);
  });

  test('created objects must be gone; deleted ones must not be', () => {
    assert.deepEqual(restoredExactly(undefined, undefined), { ok: true });
    assert.equal(restoredExactly(undefined, base).ok, false);
    assert.equal(restoredExactly(base, undefined).ok, false);
  });

  test('an extra route is reported as a length difference', () => {
    const extra = applyEdits(base, [{ op: 'set', path: ['spec', 'http', 1], value: { name: 'detour-a' } }]);
    assert.deepEqual(diffPaths({ a: [1] }, { a: [1, 2] }), ['/a (length 1 ≠ 2)']);
    assert.equal(restoredExactly(base, extra).ok, false);
  });
});
