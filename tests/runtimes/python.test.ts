/**
 * Python under `detour exec`: urllib and requests take their proxies from the environment
 * (http_proxy/HTTP_PROXY); with no proxy variable, and for plain sockets, the native layer
 * (LD_PRELOAD) routes them. Real programs (programs/*_probe.py) call payments, which only the
 * agent's pod can resolve and reach.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '../support/detour.ts';
import { buildNativeLayer } from '../support/native-layer.ts';
import { addresses } from '../support/netns.ts';
import {
  assertFailed,
  assertReachedPayments,
  paymentsName,
  paymentsTlsUrl,
  paymentsUrl,
  ports,
  type RuntimeRig,
  useRuntimeRig,
} from './runtime-rig.ts';
import { programsDir, pythonWithRequests } from './toolchains.ts';

describe('python: real urllib and requests programs reach payments through the agent', {
  timeout: 300_000,
}, () => {
  let python: string;
  let rt: RuntimeRig;
  const urllibProbe = join(programsDir, 'urllib_probe.py');
  const requestsProbe = join(programsDir, 'requests_probe.py');
  // The native layer's own probe (a raw socket, HTTP by hand): {"peer": [address, port], "body": …}.
  const socketProbe = join(repoRoot, 'layer-preload', 'test', 'fixtures', 'native_probe.py');

  /** Runs a probe inside `detour exec` with a shell prelude that adjusts the session's env. */
  const inSession = (prelude: string, script: string, url: string) =>
    rt.exec(['bash', '-c', `${prelude} exec "$0" "$1" "$2"`, python, script, url]);

  useRuntimeRig('rtp', {
    prepare: async () => {
      await buildNativeLayer();
      ({ python } = await pythonWithRequests());
    },
    started: (started) => {
      rt = started;
    },
  });

  test('python: urllib.request.urlopen via http_proxy', async () => {
    const result = await rt.exec([python, urllibProbe, paymentsUrl('/python/urllib')]);
    assertReachedPayments(result, '/python/urllib');
  });

  test('python: urllib.request.urlopen via upper-case HTTP_PROXY alone', async () => {
    const result = await inSession('unset http_proxy;', urllibProbe, paymentsUrl('/python/urllib-upper'));
    assertReachedPayments(result, '/python/urllib-upper');
  });

  test('python: requests.get via HTTP_PROXY', async () => {
    const result = await rt.exec([python, requestsProbe, paymentsUrl('/python/requests')]);
    assertReachedPayments(result, '/python/requests');
  });

  test('python: urllib https via https_proxy (CONNECT; certificate checked against the cluster name)', async () => {
    const result = await inSession(
      `export SSL_CERT_FILE='${rt.trust.certPem}';`,
      urllibProbe,
      paymentsTlsUrl('/python/urllib-https'),
    );
    assertReachedPayments(result, '/python/urllib-https', { tls: true });
  });

  test('python: requests.get https via HTTPS_PROXY (CONNECT)', async () => {
    const result = await inSession(
      `export REQUESTS_CA_BUNDLE='${rt.trust.certPem}';`,
      requestsProbe,
      paymentsTlsUrl('/python/requests-https'),
    );
    assertReachedPayments(result, '/python/requests-https', { tls: true });
  });

  test('python: requests.get with the short name "payments"', async () => {
    const result = await rt.exec([python, requestsProbe, paymentsUrl('/python/short-name', 'payments')]);
    assertReachedPayments(result, '/python/short-name');
  });

  const noProxyVariables = 'unset HTTP_PROXY http_proxy HTTPS_PROXY https_proxy ALL_PROXY all_proxy;';

  test('python: urllib and requests with no proxy variable (the native layer routes them)', async () => {
    for (const [script, name] of [
      [urllibProbe, 'urllib'],
      [requestsProbe, 'requests'],
    ] as const) {
      const result = await inSession(noProxyVariables, script, paymentsUrl(`/python/${name}-no-proxy`));
      assertReachedPayments(result, `/python/${name}-no-proxy`);
    }
  });

  test('python: requests https with no proxy variable (TLS in the program, certificate checked)', async () => {
    const result = await inSession(
      `${noProxyVariables} export REQUESTS_CA_BUNDLE='${rt.trust.certPem}';`,
      requestsProbe,
      paymentsTlsUrl('/python/requests-https-no-proxy'),
    );
    assertReachedPayments(result, '/python/requests-https-no-proxy', { tls: true });
  });

  test('python: a raw socket (getaddrinfo + create_connection) reaches payments; getpeername is the cluster address', async () => {
    const result = await rt.exec([
      python,
      socketProbe,
      'http',
      paymentsName,
      String(ports.payments),
      '/python/socket',
    ]);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const { peer, body } = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as {
      peer: [string, number];
      body: { app: string; path: string };
    };
    assert.deepEqual(peer, [addresses.cluster, ports.payments]);
    assert.deepEqual({ app: body.app, path: body.path }, { app: 'payments', path: '/python/socket' });
  });

  test('python: requests with only ALL_PROXY=socks5h:// needs PySocks (requests[socks])', async (t) => {
    const hasSocks = await rt.inLaptop([python, '-c', 'import socks']);
    const result = await inSession(
      'unset HTTP_PROXY http_proxy;',
      requestsProbe,
      paymentsUrl('/python/requests-socks'),
    );
    if (hasSocks.code === 0) {
      t.diagnostic('PySocks is installed: requests uses ALL_PROXY=socks5h:// itself');
      assertReachedPayments(result, '/python/requests-socks');
    } else {
      assertFailed(result, /Missing dependencies for SOCKS support/);
    }
  });
});
