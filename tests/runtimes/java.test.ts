/**
 * The JVM under `detour exec`: JAVA_TOOL_OPTIONS carries socksProxyHost (java.net.Socket and
 * everything built on it) and http(s).proxyHost (URLConnection, java.net.http.HttpClient), pointing
 * at the CLI's loopback proxy. Real programs (programs/Probe.java, compiled with javac at test
 * time) call payments, which only the agent's pod can resolve and reach.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  assertFailed,
  assertReachedPayments,
  paymentsTlsUrl,
  paymentsUrl,
  ports,
  type RuntimeRig,
  useRuntimeRig,
} from './runtime-rig.ts';
import { compileJava, type Java, scratchDir } from './toolchains.ts';

describe('java: a real JVM program reaches payments through the agent', { timeout: 240_000 }, () => {
  const scratch = scratchDir('java');
  let java: Java;
  let rt: RuntimeRig;

  let trustFlags: string[];

  const probe = (mode: string, url: string, flags: string[] = [], jvm: string[] = []) => [
    java.java,
    ...jvm,
    '-cp',
    java.classes,
    'Probe',
    mode,
    ...flags,
    url,
  ];

  useRuntimeRig('rtj', {
    prepare: async () => {
      java = await compileJava(scratch.path);
    },
    started: async (started) => {
      rt = started;
      trustFlags = await rt.jvmTrustFlags();
    },
    cleanup: () => scratch.remove(),
  });

  test('java: java.net.Socket via socksProxyHost (name unresolvable locally → sent to the proxy)', async () => {
    const result = await rt.exec(probe('socket', paymentsUrl('/java/socket')));
    assertReachedPayments(result, '/java/socket');
  });

  test('java: java.net.Socket to an unresolved InetSocketAddress via socksProxyHost (remote DNS always)', async () => {
    const result = await rt.exec(probe('socket-unresolved', paymentsUrl('/java/socket-unresolved')));
    assertReachedPayments(result, '/java/socket-unresolved');
  });

  test('java: HttpURLConnection via http.proxyHost', async () => {
    const result = await rt.exec(probe('urlconnection', paymentsUrl('/java/urlconnection')));
    assertReachedPayments(result, '/java/urlconnection');
    assert.match(result.stderr, /usingProxy true/);
  });

  test('java: HttpURLConnection via socksProxyHost alone (http.proxyHost cleared)', async () => {
    const result = await rt.exec(
      probe('urlconnection', paymentsUrl('/java/urlconnection-socks'), ['--socks-only']),
    );
    assertReachedPayments(result, '/java/urlconnection-socks');
  });

  test('java: java.net.http.HttpClient (default ProxySelector honours http.proxyHost)', async () => {
    const result = await rt.exec(probe('httpclient', paymentsUrl('/java/httpclient')));
    assertReachedPayments(result, '/java/httpclient');
    // The client was built without .proxy(...): the default selector routed it.
    assert.match(result.stderr, /explicit proxy selector Optional\.empty/);
  });

  test('java: java.net.http.HttpClient does not use socksProxyHost (http.proxyHost cleared → fails)', async () => {
    const result = await rt.exec(
      probe('httpclient', paymentsUrl('/java/httpclient-socks'), ['--socks-only']),
    );
    assertFailed(result, /probe httpclient failed: java\.net\.ConnectException/);
  });

  test('java: HttpsURLConnection via https.proxyHost (CONNECT; certificate checked against the cluster name)', async () => {
    const result = await rt.exec(
      probe('urlconnection', paymentsTlsUrl('/java/https-urlconnection'), [], trustFlags),
    );
    assertReachedPayments(result, '/java/https-urlconnection', { tls: true });
    assert.match(result.stderr, /usingProxy true/);
  });

  test('java: java.net.http.HttpClient https via https.proxyHost (CONNECT)', async () => {
    const result = await rt.exec(
      probe('httpclient', paymentsTlsUrl('/java/https-httpclient'), [], trustFlags),
    );
    assertReachedPayments(result, '/java/https-httpclient', { tls: true });
  });

  test('java: short name "payments" resolved by the agent, not the laptop', async () => {
    const result = await rt.exec(probe('urlconnection', paymentsUrl('/java/short-name', 'payments')));
    assertReachedPayments(result, '/java/short-name');
  });

  test('java: InetAddress.getByName of a cluster name fails (the JVM resolver is local; no property routes it)', async () => {
    const result = await rt.exec(probe('lookup', paymentsUrl('/java/lookup')));
    assertFailed(result, /probe lookup failed: java\.net\.UnknownHostException/);
  });

  test('java: with a stale local answer for the name, new Socket(name, port) and SOCKS-only HttpURLConnection send the local address; http.proxyHost clients do not', async () => {
    // A stale /etc/hosts entry on the laptop for the cluster name, and a local decoy on that address.
    const decoy = await rt.rig.startApp('laptop', 'decoy', { port: ports.payments, host: '127.0.0.1' });
    rt.rig.topology.writeHosts('laptop', { '127.0.0.1': ['payments.staging.svc.cluster.local'] });
    try {
      const resolved = await rt.exec(probe('socket', paymentsUrl('/java/socket-stale-hosts')));
      assert.equal(resolved.code, 0, resolved.stderr);
      assert.equal(JSON.parse(resolved.stdout).app, 'decoy', 'the JVM sent the locally resolved address');
      const unresolved = await rt.exec(
        probe('socket-unresolved', paymentsUrl('/java/unresolved-stale-hosts')),
      );
      assertReachedPayments(unresolved, '/java/unresolved-stale-hosts');
      // HttpURLConnection over SOCKS alone connects the same way as new Socket(name, port).
      const socksOnly = await rt.exec(
        probe('urlconnection', paymentsUrl('/java/socks-stale-hosts'), ['--socks-only']),
      );
      assert.equal(socksOnly.code, 0, socksOnly.stderr);
      assert.equal(
        JSON.parse(socksOnly.stdout).app,
        'decoy',
        'HttpURLConnection over SOCKS sent the local address',
      );
      // Through http(s).proxyHost the name is never resolved locally.
      for (const mode of ['urlconnection', 'httpclient']) {
        const viaHttpProxy = await rt.exec(probe(mode, paymentsUrl(`/java/${mode}-stale-hosts`)));
        assertReachedPayments(viaHttpProxy, `/java/${mode}-stale-hosts`);
      }
    } finally {
      rt.rig.topology.writeHosts('laptop', {});
      await decoy.stop();
    }
  });
});
