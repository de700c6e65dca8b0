// The served-by annotation as several replicas edit it: each holder of a session's tunnel adds
// itself and takes itself off, and what every replica's directory makes of the result.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LEASE_ANNOTATIONS } from '@detour/mesh-adapters';
import { SESSION_LABEL } from '@detour/mesh-adapters/session-records';
import { type ServedBy, servedByOf, withHolder } from '../../src/peers/served-by.ts';
import { type LeaseView, SessionDirectory } from '../../src/peers/session-directory.ts';
import { devA } from '../inbound/stack.ts';

const a = { pod: 'agent-a', address: '198.18.0.10:8080' };
const b = { pod: 'agent-b', address: '198.18.0.11:8080' };
const c = { pod: 'agent-c', address: '198.18.0.12:8080' };
const steal = { mode: 'steal' as const, filter: devA };

function leaseWith(served: ServedBy | undefined): LeaseView {
  return {
    metadata: {
      name: 'detour-dev-a',
      labels: { [SESSION_LABEL]: 'dev-a' },
      annotations: served ? { [LEASE_ANNOTATIONS.servedBy]: JSON.stringify(served) } : {},
    },
  };
}

describe('served-by: the holders of a session', () => {
  it('adds each replica once, in the order they registered, and refreshes a known one in place', () => {
    const one = withHolder(undefined, a, steal);
    const two = withHolder(one, b, steal);
    assert.deepEqual(two?.holders, [a, b]);
    const moved = { pod: 'agent-a', address: '198.18.0.20:8080' };
    assert.deepEqual(withHolder(two, moved, steal)?.holders, [moved, b]);
    assert.deepEqual(withHolder(two, b, steal), two, 'a replica registering again changes nothing');
  });

  it('takes a replica off; the last one off removes the annotation', () => {
    const both = withHolder(withHolder(undefined, a, steal), b, steal);
    assert.deepEqual(withHolder(both, a, undefined)?.holders, [b]);
    assert.equal(withHolder(withHolder(both, a, undefined), b, undefined), undefined);
    assert.equal(withHolder(undefined, a, undefined), undefined);
  });

  it('reads only what it can trust: the holders list, a known mode', () => {
    const written = withHolder(undefined, a, steal);
    assert.deepEqual(servedByOf({ [LEASE_ANNOTATIONS.servedBy]: JSON.stringify(written) }), written);
    // The shape of earlier releases (one pod, no list) and garbage are both "no holder known".
    const single = JSON.stringify({ pod: 'agent-a', address: a.address, ...steal });
    assert.equal(servedByOf({ [LEASE_ANNOTATIONS.servedBy]: single }), undefined);
    assert.equal(servedByOf({ [LEASE_ANNOTATIONS.servedBy]: '{' }), undefined);
    assert.equal(
      servedByOf({ [LEASE_ANNOTATIONS.servedBy]: JSON.stringify({ ...written, holders: [] }) }),
      undefined,
    );
  });

  it('a directory forwards to the holder other than itself recorded last, never to itself', () => {
    const directory = new SessionDirectory('agent-a');
    const request = { authority: 'orders:8080', method: 'GET', path: '/', headers: { 'x-dev': 'dev-a' } };
    directory.update(leaseWith({ ...steal, holders: [a] }));
    assert.equal(directory.match(request), undefined, 'held by this replica alone: its registry decides');
    directory.update(leaseWith({ ...steal, holders: [a, b, c] }));
    assert.equal(directory.match(request)?.pod, 'agent-c');
    assert.equal(directory.match(request)?.host, '198.18.0.12');
    directory.update(leaseWith({ ...steal, holders: [c, b, a] }));
    assert.equal(directory.match(request)?.pod, 'agent-b');
    directory.update(leaseWith({ mode: 'egress-only', holders: [b] }));
    assert.equal(directory.size, 0, 'an egress-only session takes no requests');
    directory.update(leaseWith(undefined));
    assert.equal(directory.size, 0);
  });
});
