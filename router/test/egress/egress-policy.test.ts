import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EgressPolicy } from '@detour/router/egress/egress-policy';
import { InvalidInputError } from '@detour/router/errors';

test('by default cluster names go remote, loopback and other names stay local', () => {
  const policy = new EgressPolicy();
  for (const host of [
    'payments',
    'payments.staging',
    'payments.staging.svc',
    'payments.staging.svc.cluster.local',
  ]) {
    assert.equal(policy.decide(host), host === 'payments.staging' ? 'local' : 'remote', host);
  }
  for (const host of [
    'localhost',
    'db.localhost',
    '127.0.0.1',
    '::1',
    '[::1]',
    'example.com',
    '10.0.0.1',
    '',
  ]) {
    assert.equal(policy.decide(host), 'local', host);
  }
  assert.equal(policy.decide('PAYMENTS.Staging.SVC.cluster.local.'), 'remote');
});

test('include and exclude lists: names, wildcards, addresses, CIDRs; exclude wins', () => {
  const policy = new EgressPolicy({
    include: ['10.96.0.0/12', 'fd00::/8', '*.corp.example', 'payments.staging', '192.0.2.7'],
    exclude: ['mock-payments', '*.local-only.svc', '10.96.0.99'],
    clusterDomain: 'k8s.example',
  });
  const expected: Record<string, 'remote' | 'local'> = {
    '10.100.1.2': 'remote',
    '10.96.0.99': 'local',
    'fd00::1': 'remote',
    'fe80::1': 'local',
    'api.corp.example': 'remote',
    'corp.example': 'local',
    'payments.staging': 'remote',
    '192.0.2.7': 'remote',
    'mock-payments': 'local',
    'a.local-only.svc': 'local',
    'payments.staging.svc.k8s.example': 'remote',
    'payments.staging.svc.cluster.local': 'local',
  };
  for (const [host, decision] of Object.entries(expected)) assert.equal(policy.decide(host), decision, host);
  assert.equal(new EgressPolicy({ include: ['*'], exclude: ['db'] }).decide('example.com'), 'remote');
});

test('addresses a remote lookup returned go remote afterwards (not loopback ones)', () => {
  const policy = new EgressPolicy();
  assert.equal(policy.decide('10.96.4.4'), 'local');
  policy.noteRemoteAddresses(['10.96.4.4', '127.0.0.5']);
  assert.equal(policy.decide('10.96.4.4'), 'remote');
  assert.equal(policy.decide('127.0.0.5'), 'local');
});

test('the same lists travel through the environment to the layer', () => {
  const policy = new EgressPolicy({
    include: ['10.96.0.0/12'],
    exclude: ['db'],
    clusterDomain: 'k8s.example',
  });
  const copy = EgressPolicy.fromEnv(policy.toEnv());
  assert.deepEqual(copy.config, policy.config);
  assert.equal(copy.decide('db'), 'local');
  assert.equal(copy.decide('10.97.0.1'), 'remote');
});

test('a bad entry is rejected with a message naming it and the fix', () => {
  for (const entry of ['10.0.0.0/33', 'bad name', '1.2.3.4/x', '*.']) {
    assert.throws(
      () => new EgressPolicy({ include: [entry] }),
      (err: unknown) =>
        err instanceof InvalidInputError &&
        err.code === 'DETOUR_EGRESS_POLICY_INVALID' &&
        err.message.includes(`"${entry}"`),
      entry,
    );
  }
});
