import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';
import { serveSessionControl } from '../src/agent-session-control.ts';
import { SessionRegistry } from '../src/session-registry.ts';

describe('agent session control', () => {
  let pairs: Awaited<ReturnType<typeof tunnelPair>>[];
  const registry = new SessionRegistry();

  before(async () => {
    pairs = [await tunnelPair(), await tunnelPair()];
    for (const pair of pairs) serveSessionControl(registry, pair.server);
  });
  after(async () => {
    for (const pair of pairs) await pair.close();
  });

  it('registers a session and routes matching requests to it', async () => {
    const [alice] = pairs;
    const summary = await alice?.client.request('session.register', {
      id: 'alice-1',
      filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
      mode: 'steal',
      targetPort: 8080,
    });
    assert.deepEqual(
      { ...(summary as object), since: 'x' },
      {
        id: 'alice-1',
        filter: 'x-dev=dev-a',
        mode: 'steal',
        targetPort: 8080,
        holder: 'test-cli',
        since: 'x',
      },
    );
    assert.equal(registry.match({ method: 'GET', path: '/', headers: { 'x-dev': 'dev-a' } })?.id, 'alice-1');
    assert.equal(registry.match({ method: 'GET', path: '/', headers: { 'x-dev': 'dev-b' } }), undefined);
  });

  it('refuses a filter another session holds, naming the holder', async () => {
    await assert.rejects(
      pairs[1]?.client.request('session.register', {
        id: 'bob-1',
        filter: { headers: { 'x-dev': { exact: 'dev-a' } } },
        mode: 'steal',
        targetPort: 8080,
      }) ?? Promise.resolve(),
      { code: 'DETOUR_FILTER_HELD', message: /held by session alice-1 of test-cli since \d{4}-/ },
    );
  });

  it('refuses an invalid regex, naming it', async () => {
    await assert.rejects(
      pairs[1]?.client.request('session.register', {
        id: 'bob-1',
        filter: { headers: { 'x-dev': { regex: '(a)\\1' } } },
        mode: 'steal',
        targetPort: 8080,
      }) ?? Promise.resolve(),
      { code: 'DETOUR_INVALID_FILTER', message: /"\(a\)\\\\1" is not valid RE2/ },
    );
  });

  it('refuses stealing everything unless asked explicitly', async () => {
    await assert.rejects(
      pairs[1]?.client.request('session.register', {
        id: 'bob-2',
        filter: {},
        mode: 'steal',
        targetPort: 9090,
      }) ?? Promise.resolve(),
      {
        code: 'DETOUR_INVALID_FILTER',
      },
    );
    await pairs[1]?.client.request('session.register', {
      id: 'bob-2',
      filter: {},
      allowMatchAll: true,
      mode: 'steal',
      targetPort: 9090,
    });
    assert.equal(registry.list().length, 2);
  });

  it('drops the sessions of a tunnel that closes', async () => {
    await pairs[1]?.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(
      registry.list().map((session) => session.id),
      ['alice-1'],
    );
  });

  it('lets one header value be held on different targets, and routes by the host a request was sent to', async () => {
    const register = (id: string, targetHost: string) =>
      pairs[0]?.client.request('session.register', {
        id,
        filter: { headers: { 'x-dev': { exact: 'dev-h' } } },
        mode: 'steal',
        targetPort: 7000,
        targetHost,
      });
    await register('h-orders', 'orders.staging.svc.cluster.local');
    await register('h-payments', 'payments.staging.svc.cluster.local');
    await assert.rejects(register('h-orders-2', 'orders.staging.svc.cluster.local') ?? Promise.resolve(), {
      code: 'DETOUR_FILTER_HELD',
    });
    const to = (authority: string) =>
      registry.match({ method: 'GET', path: '/', headers: { 'x-dev': 'dev-h' }, authority })?.id;
    assert.equal(to('orders'), 'h-orders');
    assert.equal(to('orders.staging:8080'), 'h-orders');
    assert.equal(to('PAYMENTS.staging.svc.cluster.local'), 'h-payments');
    assert.equal(to('inventory'), undefined);
    await pairs[0]?.client.request('session.unregister', { id: 'h-orders' });
    await pairs[0]?.client.request('session.unregister', { id: 'h-payments' });
  });

  it('unregisters only its own session', async () => {
    assert.deepEqual(await pairs[0]?.client.request('session.unregister', { id: 'alice-1' }), {
      removed: true,
    });
    assert.equal(registry.list().length, 0);
  });
});

describe('agent session control: egress-only sessions', () => {
  it('registers a session that takes no requests, holds no filter, and is dropped with its tunnel', async () => {
    const registry = new SessionRegistry();
    const pair = await tunnelPair();
    const dropped = Promise.withResolvers<string[]>();
    serveSessionControl(registry, pair.server, (sessions) => dropped.resolve(sessions.map((s) => s.id)));
    const lease = { name: 'detour-eve', namespace: 'staging' };
    const summary = await pair.client.request('session.register', { id: 'eve', mode: 'egress-only', lease });
    assert.deepEqual(
      { ...(summary as object), since: 'x' },
      { id: 'eve', mode: 'egress-only', holder: 'test-cli', since: 'x' },
    );
    assert.equal(registry.has('eve'), true, 'the agent counts it alive (the janitor asks this)');
    assert.deepEqual(registry.routed(), []);
    // It takes nothing, not even a request that carries nothing at all.
    assert.equal(registry.match({ method: 'GET', path: '/', headers: {} }), undefined);
    // ...and holds nothing: a steal-all of someone else is still accepted.
    const other = await tunnelPair();
    serveSessionControl(registry, other.server);
    await other.client.request('session.register', {
      id: 'all',
      filter: {},
      allowMatchAll: true,
      mode: 'steal',
      targetPort: 8080,
    });
    assert.equal(registry.match({ method: 'GET', path: '/', headers: {} })?.id, 'all');
    await assert.rejects(
      pair.client.request('session.register', { id: 'eve', mode: 'egress-only', filter: {} }),
      { code: 'DETOUR_INVALID_SESSION' },
      'an egress-only session carries no filter',
    );
    await pair.close();
    assert.deepEqual(await dropped.promise, ['eve']);
    await other.close();
  });
});
