import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EgressProxy } from '@detour/cli/egress/egress-proxy';
import { EgressRouter } from '@detour/cli/egress/egress-router';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { EgressPolicy } from '@detour/router/egress/egress-policy';
import {
  clusterAddress,
  type FakeCluster,
  multiAddresses,
  type RunningApp,
  startApp,
  startFakeCluster,
} from './fake-cluster.ts';

// --require (not --import) because only --require preloads from NODE_OPTIONS also run in worker threads.
const layer = { NODE_OPTIONS: '--require @detour/layer/register', DETOUR_ROUTING_HEADERS: 'x-dev,baggage' };
const httpKinds = ['http', 'http-agent', 'https', 'fetch', 'undici', 'undici7'] as const;

describe('the layer in a real node app, against a stand-in cluster', () => {
  let cluster: FakeCluster;
  let app: RunningApp;
  before(async () => {
    cluster = await startFakeCluster();
    app = await startApp({ ...cluster.env, ...layer });
  });
  after(async () => {
    app?.stop();
    await cluster?.close();
  });

  for (const kind of httpKinds) {
    test(`${kind}: reaches the cluster service by its cluster name and carries the request's x-dev`, async () => {
      const before = cluster.proxy.stats.layerForward;
      const result = (await app.inside(kind, { 'x-dev': 'dev-a', baggage: 'k=v' })) as {
        headers: Record<string, string>;
        servername: string | null;
      };
      assert.equal(result.headers?.['x-dev'], 'dev-a', JSON.stringify(result));
      assert.equal(result.headers?.baggage, 'k=v');
      assert.match(result.headers?.host ?? '', /^payments/);
      assert.ok(
        cluster.proxy.stats.layerForward > before ||
          kind === 'undici' ||
          kind === 'undici7' ||
          kind === 'fetch',
      );
      if (kind === 'https') assert.equal(result.servername, 'payments.staging.svc.cluster.local');
    });

    test(`${kind}: never overwrites an x-dev the app set itself`, async () => {
      const result = (await app.inside(kind, { 'x-dev': 'dev-a' }, 'app-own')) as {
        headers: Record<string, string>;
      };
      assert.equal(result.headers?.['x-dev'], 'app-own', JSON.stringify(result));
    });

    test(`${kind}: outside any request, no routing header is added (none configured)`, async () => {
      const result = (await app.outside(kind)) as { headers: Record<string, string> };
      assert.equal(result.headers?.['x-dev'], undefined, JSON.stringify(result));
    });
  }

  test('grpc-js unary: reaches the cluster by name and carries x-dev as metadata', async () => {
    const result = (await app.inside('grpc', { 'x-dev': 'dev-a' })) as { metadata: Record<string, string> };
    assert.equal(result.metadata?.['x-dev'], 'dev-a', JSON.stringify(result));
    const own = (await app.inside('grpc', { 'x-dev': 'dev-a' }, 'app-own')) as {
      metadata: Record<string, string>;
    };
    assert.equal(own.metadata?.['x-dev'], 'app-own', JSON.stringify(own));
    const outside = (await app.outside('grpc')) as { metadata: Record<string, string> };
    assert.equal(outside.metadata?.['x-dev'], undefined, JSON.stringify(outside));
  });

  test('http2 client: reaches the cluster by name, carries x-dev, keeps an app-set one', async () => {
    const result = (await app.inside('http2', { 'x-dev': 'dev-a' })) as { headers: Record<string, string> };
    assert.equal(result.headers?.['x-dev'], 'dev-a', JSON.stringify(result));
    assert.equal(result.headers?.[':authority'], 'payments:8080');
    const own = (await app.inside('http2', { 'x-dev': 'dev-a' }, 'app-own')) as {
      headers: Record<string, string>;
    };
    assert.equal(own.headers?.['x-dev'], 'app-own');
  });

  test('an inbound HTTP/2 request is captured too (the app serves h2c)', async () => {
    for (const kind of ['http', 'fetch', 'grpc', 'http2']) {
      const result = await app.insideH2(kind, { 'x-dev': 'dev-h2' });
      const headers = (result.headers ?? result.metadata) as Record<string, string> | undefined;
      assert.equal(headers?.['x-dev'], 'dev-h2', `${kind}: ${JSON.stringify(result)}`);
    }
  });

  test('concurrent requests with different x-dev values each propagate their own', async () => {
    const pick = (r: Record<string, unknown>) =>
      ((r.headers ?? r.metadata) as Record<string, string> | undefined)?.['x-dev'];
    for (const kind of [...httpKinds, 'grpc']) {
      const values = ['dev-a', 'dev-b', 'dev-c', 'dev-d'];
      const results = await Promise.all(values.map((value) => app.inside(kind, { 'x-dev': value })));
      assert.deepEqual(results.map(pick), values, kind);
    }
  });

  test('net.connect by cluster name goes through the proxy, with half-close honoured', async () => {
    const before = cluster.proxy.stats.layerForward;
    const result = await app.inside('net');
    assert.equal(result.answer, 'pong:ping', JSON.stringify(result));
    assert.equal(cluster.proxy.stats.layerForward, before + 1);
  });

  test('the loopback database stays local: no proxy connection', async () => {
    const connections = cluster.proxy.stats.connections;
    const accepted = cluster.accepted.database;
    assert.deepEqual(await app.inside('database'), { answer: '1 row' });
    assert.deepEqual(await app.outside('database'), { answer: '1 row' });
    assert.equal(cluster.proxy.stats.connections, connections);
    assert.equal(cluster.accepted.database, accepted + 2);
  });

  test('dns.lookup and dns.promises.lookup of cluster names resolve inside the cluster', async () => {
    assert.deepEqual(await app.outside('lookup'), { address: clusterAddress, family: 4 });
    assert.deepEqual(await app.outside('lookup-callback'), [{ address: clusterAddress, family: 4 }]);
  });

  test('every address of a name, through lookup with all, resolve4/6 and Resolver instances', async () => {
    const result = (await app.outside('dns-all')) as Record<string, unknown>;
    const [v4a, v4b, v6] = multiAddresses;
    assert.deepEqual(result.lookupAll, [
      { address: v4a, family: 4 },
      { address: v4b, family: 4 },
      { address: v6, family: 6 },
    ]);
    assert.deepEqual(result.lookupFirst, { address: v4a, family: 4 });
    assert.deepEqual(result.resolve4, [v4a, v4b]);
    assert.deepEqual(result.resolve6, [v6]);
    assert.deepEqual(result.resolveA, [v4a, v4b]);
    assert.deepEqual(result.resolverTtl, [
      { address: v4a, ttl: 0 },
      { address: v4b, ttl: 0 },
    ]);
    assert.deepEqual(result.promisesResolver, [v4a, v4b]);
    const srv = result.srv as { error: { code: string; message: string } };
    assert.equal(srv.error.code, 'ENOTIMP');
    assert.match(srv.error.message, /querySRV ENOTIMP .*detour answers only A and AAAA/);
    const unknown = result.unknown as { error: { code: string; message: string } };
    assert.equal(unknown.error.code, 'ENOTFOUND');
    assert.match(unknown.error.message, /^queryA ENOTFOUND nope\.staging\.svc\.cluster\.local$/);
  });

  test('a name the cluster cannot resolve fails with ENOTFOUND for that name', async () => {
    const viaFetch = (await app.outside('unknown')) as { error: { code: string; message: string } };
    assert.equal(viaFetch.error?.code, 'ENOTFOUND');
    assert.match(viaFetch.error.message, /nope\.staging\.svc\.cluster\.local/);
    const viaLookup = (await app.outside('unknown-lookup')) as { error: { code: string; message: string } };
    assert.equal(viaLookup.error?.code, 'ENOTFOUND');
    assert.match(viaLookup.error.message, /ENOTFOUND nope/);
  });

  test('a child node inherits the layer, also when started with a cleaned env, sync or through a shell', async () => {
    const kinds = [
      'child',
      'child-clean-env',
      'execFileSync-clean-env',
      'spawnSync-clean-env',
      'execSync-shell-clean-env',
    ];
    for (const kind of kinds) {
      const result = (await app.outside(kind)) as { headers: Record<string, string> };
      assert.match(result.headers?.host ?? '', /^payments/, `${kind}: ${JSON.stringify(result)}`);
    }
  });

  test("the proxy variables are hidden from the app's own clients and given back to its children", async () => {
    const result = (await app.outside('proxy-env')) as { own: string | null; child: string };
    assert.equal(result.own, null, JSON.stringify(result));
    assert.equal(result.child, cluster.env.http_proxy, JSON.stringify(result));
  });

  test('a worker thread inherits the layer', async () => {
    const result = (await app.inside('worker', { 'x-dev': 'dev-a' })) as { headers: Record<string, string> };
    assert.match(result.headers?.host ?? '', /^payments/, JSON.stringify(result));
  });
});

describe('session headers outside a request (DETOUR_DEFAULT_HEADERS)', () => {
  let cluster: FakeCluster;
  let app: RunningApp;
  before(async () => {
    cluster = await startFakeCluster();
    app = await startApp({ ...cluster.env, ...layer, DETOUR_DEFAULT_HEADERS: '{"x-dev":"dev-b"}' });
  });
  after(async () => {
    app?.stop();
    await cluster?.close();
  });

  for (const kind of [...httpKinds, 'grpc'] as const) {
    test(`${kind}: carries the session's header outside a request, the request's inside one`, async () => {
      const pick = (r: Record<string, unknown>) =>
        ((r.headers ?? r.metadata) as Record<string, string> | undefined)?.['x-dev'];
      assert.equal(pick(await app.outside(kind)), 'dev-b');
      assert.equal(pick(await app.inside(kind, { 'x-dev': 'dev-a' })), 'dev-a');
      assert.equal(pick(await app.inside(kind, {}, 'app-own')), 'app-own');
    });
  }
});

describe('failure', () => {
  test('the proxy down: the connection fails fast with DETOUR_PROXY_DOWN naming detour and the fix', async () => {
    const cluster = await startFakeCluster();
    const env: Record<string, string> = { ...cluster.env, ...layer };
    delete env.TEST_CA_FILE;
    await cluster.close();
    const app = await startApp(env);
    try {
      for (const kind of ['http', 'fetch', 'net', 'lookup']) {
        const started = performance.now();
        const result = (await app.outside(kind)) as { error?: { code: string; message: string } };
        assert.ok(performance.now() - started < 2000, `${kind} took ${performance.now() - started} ms`);
        assert.equal(result.error?.code, 'DETOUR_PROXY_DOWN', `${kind}: ${JSON.stringify(result)}`);
        assert.match(result.error.message, /detour.s egress proxy .*`detour up`/);
      }
    } finally {
      app.stop();
    }
  });
});

describe('tunnel down', () => {
  test('the proxy up but the tunnel down: DETOUR_TUNNEL_DOWN naming the tunnel, for connect and lookup', async () => {
    const down = () =>
      Promise.reject(Object.assign(new Error('tunnel down'), { code: 'DETOUR_TUNNEL_DOWN' }));
    const proxy = new EgressProxy({
      router: new EgressRouter({
        policy: new EgressPolicy(),
        remote: { connect: down, lookup: down },
        local: new DirectDialer(),
      }),
    });
    await proxy.listen();
    const app = await startApp({ ...proxy.env(), ...layer });
    try {
      for (const kind of ['http', 'fetch', 'lookup']) {
        const result = (await app.outside(kind)) as { error?: { code: string; message: string } };
        assert.equal(result.error?.code, 'DETOUR_TUNNEL_DOWN', `${kind}: ${JSON.stringify(result)}`);
        assert.match(result.error.message, /tunnel to the cluster is down/);
      }
    } finally {
      app.stop();
      await proxy.close();
    }
  });
});

describe('loading', () => {
  let cluster: FakeCluster;
  before(async () => {
    cluster = await startFakeCluster();
  });
  after(async () => {
    await cluster?.close();
  });

  test('--import works for the main thread of an ESM app', async () => {
    const app = await startApp({ ...cluster.env, ...layer, NODE_OPTIONS: '--import @detour/layer/register' });
    try {
      const result = (await app.inside('fetch', { 'x-dev': 'dev-a' })) as { headers: Record<string, string> };
      assert.equal(result.headers?.['x-dev'], 'dev-a');
    } finally {
      app.stop();
    }
  });

  test('loaded twice (--require and --import), it patches once', async () => {
    const app = await startApp({
      ...cluster.env,
      ...layer,
      NODE_OPTIONS: '--require @detour/layer/register --import @detour/layer/register',
    });
    try {
      const forwards = cluster.proxy.stats.layerForward;
      assert.equal((await app.inside('net')).answer, 'pong:ping');
      assert.equal(cluster.proxy.stats.layerForward, forwards + 1);
      const state = (await app.outside('layer-state')) as { loads: number; patched: string };
      assert.equal(state.patched, 'detourConnect');
    } finally {
      app.stop();
    }
  });
});
