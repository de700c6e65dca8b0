/**
 * The native preload layer (layer-preload/native) in real programs (python3, curl, node) started
 * with LD_PRELOAD and the proxy's env without any proxy variable, against the stand-in cluster of
 * fake-cluster.ts (its services answer only through the proxy, by cluster name or 127.77.0.0/16).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildNativeLayer } from '../../tests/support/native-layer.ts';
import { freePort } from '../../tests/support/ports.ts';
import { type RunResult, run } from '../../tests/support/processes.ts';
import {
  clusterAddress,
  type FakeCluster,
  multiAddresses,
  multiAddressName,
  startFakeCluster,
} from './fake-cluster.ts';

const probe = path.join(import.meta.dirname, 'fixtures', 'native_probe.py');
const payments = 'payments.staging.svc.cluster.local';
const proxyVariable = /^(all|http|https|no)_proxy$/i;

describe('the native layer (LD_PRELOAD) in real programs, against a stand-in cluster', () => {
  let cluster: FakeCluster;
  let library: string;
  let env: Record<string, string>;

  before(async () => {
    library = await buildNativeLayer();
    cluster = await startFakeCluster();
    env = {
      ...Object.fromEntries(Object.entries(cluster.env).filter(([name]) => !proxyVariable.test(name))),
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      LD_PRELOAD: library,
    };
  });
  after(() => cluster?.close());

  const python = async (args: string[], extra: Record<string, string | undefined> = {}) => {
    const merged = Object.fromEntries(
      Object.entries({ ...env, ...extra }).filter(([, v]) => v !== undefined),
    );
    const result = await run(['python3', probe, ...args], { env: merged, timeoutMs: 30_000 });
    const line = result.stdout.trim().split('\n').at(-1) ?? '';
    try {
      return { ...result, json: JSON.parse(line) as Record<string, unknown> };
    } catch {
      throw new Error(
        `native_probe.py printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`,
      );
    }
  };
  const ok = (result: RunResult & { json: Record<string, unknown> }) => {
    assert.equal(result.code, 0, `${JSON.stringify(result.json)}\n${result.stderr}`);
    return result.json;
  };
  const proxyConnections = () => cluster.proxy.stats.connections;

  test('getaddrinfo and gethostbyname_ex of cluster names answer the cluster, every address', async () => {
    assert.deepEqual(ok(await python(['resolve', payments])), {
      getaddrinfo: [clusterAddress],
      gethostbyname_ex: [clusterAddress],
    });
    const all = ok(await python(['resolve', multiAddressName]));
    assert.deepEqual(all.getaddrinfo, [...multiAddresses].sort());
    // gethostbyname is IPv4 only.
    assert.deepEqual(
      all.gethostbyname_ex,
      multiAddresses.filter((a) => net.isIPv4(a)),
    );
  });

  test('a raw socket reaches the cluster service by name; getpeername reports the destination', async () => {
    const forwards = cluster.proxy.stats.layerForward;
    const result = ok(await python(['http', payments, '80', '/raw']));
    assert.deepEqual(result.peer, [clusterAddress, 80]);
    assert.equal((result.body as { url: string }).url, '/raw');
    assert.equal((result.body as { headers: { host: string } }).headers.host, payments);
    assert.equal(cluster.proxy.stats.layerForward, forwards + 1);
  });

  test('a non-blocking connect stays non-blocking (EINPROGRESS or done) and completes; connecting again is not a second connection', async () => {
    const forwards = cluster.proxy.stats.layerForward;
    const result = ok(await python(['nonblocking', 'payments', '80', '/nonblocking']));
    assert.match(String(result.connect), /^(0|EINPROGRESS)$/);
    assert.match(String(result.again), /^(0|EISCONN)$/); // CPython's connect_ex reports EISCONN as 0
    assert.equal(cluster.proxy.stats.layerForward, forwards + 1);
    assert.deepEqual(result.peer, [clusterAddress, 80]);
    assert.equal((result.body as { url: string }).url, '/nonblocking');
  });

  test('an IPv6 socket to the IPv4-mapped address (the JVM default) is forwarded', async () => {
    const result = ok(await python(['v6mapped', payments, '80', '/mapped']));
    assert.deepEqual(result.peer, [`::ffff:${clusterAddress}`, 80]);
    assert.equal((result.body as { url: string }).url, '/mapped');
  });

  test('threads: eight connections at once each reach the service', async () => {
    const result = ok(await python(['threads', payments, '80', '8']));
    assert.deepEqual(result.answered, Array.from({ length: 8 }, (_, i) => `/thread/${i}`).sort());
  });

  test('inherited by children: a forked child and an exec-ed curl', async () => {
    const forked = ok(await python(['fork', payments, '80', '/forked']));
    assert.equal((forked.child as { body: { url: string } }).body.url, '/forked');
    const executed = ok(await python(['exec', payments, '80', '/executed']));
    assert.equal((executed.child as { url: string }).url, '/executed');
  });

  test('urllib with no proxy variables, and curl --noproxy "*", reach the service', async () => {
    const urllib = ok(await python(['urllib', `http://${payments}/urllib`]));
    // urllib reads every *_proxy variable: DETOUR_PROXY shows up as a "detour" scheme, never used.
    assert.deepEqual(Object.keys(urllib.proxies as object), ['detour']);
    assert.equal((urllib.body as { url: string }).url, '/urllib');
    const curl = await run(['curl', '-sS', '--noproxy', '*', '--max-time', '10', `http://payments/curl`], {
      env,
    });
    assert.equal(curl.code, 0, curl.stderr);
    assert.equal(JSON.parse(curl.stdout).url, '/curl');
  });

  test('a name the cluster does not know fails with EAI_NONAME', async () => {
    const result = await python(['resolve', 'nope.staging.svc.cluster.local']);
    assert.equal(result.code, 1);
    assert.equal(result.json.errno, -2, JSON.stringify(result.json)); // EAI_NONAME
    assert.doesNotMatch(result.stderr, /detour:/);
  });

  test('a refused cluster port is ECONNREFUSED, as without detour, with nothing on stderr', async () => {
    const result = await python(['http', payments, '81', '/']);
    assert.equal(result.code, 1);
    assert.equal(result.json.errno, 111, JSON.stringify(result.json)); // ECONNREFUSED
    assert.doesNotMatch(result.stderr, /detour:/);
  });

  test('loopback and excluded destinations stay local: the proxy sees no connection', async () => {
    const excluded = '127.77.0.99';
    const server = net.createServer((socket) => {
      socket.end('HTTP/1.0 200 OK\r\n\r\n{"app":"excluded"}');
    });
    await new Promise<void>((resolve) => server.listen(0, excluded, resolve));
    const excludedPort = (server.address() as net.AddressInfo).port;
    try {
      const before = { proxy: proxyConnections(), database: cluster.accepted.database };
      // The "database" answers after a half-close, which curl never sends: its connect is what counts.
      const database = await run(
        ['curl', '-sS', '--max-time', '1', `telnet://127.0.0.1:${cluster.databasePort}`],
        { env },
      );
      assert.equal(cluster.accepted.database, before.database + 1, database.stderr);
      const local = ok(
        await python(['http', excluded, String(excludedPort), '/'], { DETOUR_EGRESS_EXCLUDE: excluded }),
      );
      assert.deepEqual(local.body, { app: 'excluded' });
      assert.equal(proxyConnections(), before.proxy, 'a loopback or excluded destination went to the proxy');
    } finally {
      server.close();
    }
  });

  test('an app that speaks to the proxy itself (HTTP_PROXY) is not forwarded, even with loopback included', async () => {
    const before = { connections: proxyConnections(), forwards: cluster.proxy.stats.layerForward };
    const result = await run(
      [
        'curl',
        '-sS',
        '--max-time',
        '10',
        '--proxy',
        `http://${cluster.env.DETOUR_PROXY}`,
        `http://${payments}/via-proxy`,
      ],
      { env: { ...env, DETOUR_EGRESS_INCLUDE: '127.0.0.1' } },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).url, '/via-proxy');
    // One connection, curl's own: a FORWARD of it would have made the proxy dial itself.
    assert.equal(cluster.proxy.stats.layerForward, before.forwards);
    assert.equal(proxyConnections(), before.connections + 1);
  });

  test('inert without DETOUR_PROXY: connects go where the app says', async () => {
    const before = proxyConnections();
    const result = await python(['http', clusterAddress, '80', '/'], { DETOUR_PROXY: undefined });
    assert.equal(result.code, 1);
    assert.equal(result.json.errno, 111, JSON.stringify(result.json)); // ECONNREFUSED: nothing on 127.77.0.10:80
    assert.equal(proxyConnections(), before);
  });

  test('the proxy gone: lookups and connects fail at once, naming detour on stderr', async () => {
    const gone = `127.0.0.1:${await freePort()}`;
    const lookup = await python(['resolve', payments], { DETOUR_PROXY: gone });
    assert.equal(lookup.code, 1);
    assert.equal(lookup.json.errno, -3, JSON.stringify(lookup.json)); // EAI_AGAIN
    assert.match(
      lookup.stderr,
      new RegExp(`detour: lookup of ${payments} failed: detour's egress proxy at ${gone}`),
    );
    assert.match(lookup.stderr, /DETOUR_PROXY_DOWN/);
    const connect = await python(['http', clusterAddress, '80', '/'], { DETOUR_PROXY: gone });
    assert.equal(connect.json.errno, 111, JSON.stringify(connect.json));
    assert.match(connect.stderr, /detour: connect to 127\.77\.0\.10:80 failed: .*DETOUR_PROXY_DOWN/);
  });

  test('node: routed by the native layer alone, and by the Node layer alone when both are loaded', async () => {
    const script = `require('http').get('http://${payments}/node', (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(b)); })`;
    const plain = await run([process.execPath, '-e', script], { env: { ...env, NODE_OPTIONS: '' } });
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(JSON.parse(plain.stdout).url, '/node');
    // With the Node layer, one connection is one FORWARD: the native layer stays inert.
    const before = { connections: proxyConnections(), forwards: cluster.proxy.stats.layerForward };
    const layered = await run([process.execPath, '-e', script], {
      env: { ...env, NODE_OPTIONS: '--require @detour/layer/register' },
      cwd: path.join(import.meta.dirname, '..', '..'),
    });
    assert.equal(layered.code, 0, layered.stderr);
    assert.equal(JSON.parse(layered.stdout).url, '/node');
    assert.equal(cluster.proxy.stats.layerForward, before.forwards + 1);
    assert.equal(proxyConnections(), before.connections + 1);
  });

  test('node with the Node layer gives LD_PRELOAD back to a child started with a cleaned env', async () => {
    const script = `require('child_process').execFile('curl', ['-sS', '--noproxy', '*', '--max-time', '10', 'http://${payments}/child'], { env: { PATH: process.env.PATH } }, (error, out) => { if (error) { console.error(error.message); process.exit(1); } console.log(out); })`;
    const result = await run([process.execPath, '-e', script], {
      env: { ...env, NODE_OPTIONS: '--require @detour/layer/register' },
      cwd: path.join(import.meta.dirname, '..', '..'),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).url, '/child');
  });
});
