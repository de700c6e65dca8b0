/**
 * Go under `detour exec`: net/http's default transport takes its proxy from
 * http.ProxyFromEnvironment (HTTP_PROXY/HTTPS_PROXY/NO_PROXY). A real program (programs/go-probe,
 * stdlib only, built offline with the machine's `go`) calls payments, which only the agent's pod can
 * resolve and reach. The native layer (LD_PRELOAD) does not route Go: a static binary never loads
 * it, and a cgo one still connects with raw system calls (only its cgo DNS lookups reach it).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildNativeLayer } from '../support/native-layer.ts';
import { addresses } from '../support/netns.ts';
import {
  assertFailed,
  assertReachedPayments,
  paymentsTlsUrl,
  paymentsUrl,
  type RuntimeRig,
  useRuntimeRig,
} from './runtime-rig.ts';
import { buildGo, scratchDir } from './toolchains.ts';

describe('go: a real net/http program reaches payments through the agent', { timeout: 400_000 }, () => {
  const scratch = scratchDir('go');
  let probe: string;
  let cgoProbe: string;
  let rt: RuntimeRig;

  /** Runs the probe inside `detour exec` with a shell prelude that adjusts the session's env. */
  const inSession = (prelude: string, args: string | string[], binary = probe) =>
    rt.exec(['bash', '-c', `${prelude} exec "$0" "$@"`, binary, ...[args].flat()]);

  useRuntimeRig('rtg', {
    prepare: async () => {
      // The first build compiles net/http into the cache (~/.cache/detour/go-build); later ones reuse it.
      probe = await buildGo(scratch.path);
      cgoProbe = await buildGo(scratch.path, { cgo: true });
      await buildNativeLayer();
    },
    started: (started) => {
      rt = started;
    },
    cleanup: () => scratch.remove(),
  });

  test('go: net/http default client via HTTP_PROXY (http://, absolute-URI request)', async () => {
    const result = await rt.exec([probe, paymentsUrl('/go/http-proxy')]);
    assertReachedPayments(result, '/go/http-proxy');
    assert.match(result.stderr, /go-probe: proxy for \S+ is http:\/\/127\.0\.0\.1:\d+/);
  });

  test('go: net/http default client via HTTP_PROXY=socks5h:// (the session ALL_PROXY value)', async () => {
    const result = await inSession(
      'export HTTP_PROXY="$ALL_PROXY" http_proxy="$ALL_PROXY";',
      paymentsUrl('/go/socks5h'),
    );
    assertReachedPayments(result, '/go/socks5h');
    assert.match(result.stderr, /go-probe: proxy for \S+ is socks5h:\/\/127\.0\.0\.1:\d+/);
  });

  test('go: net/http https via HTTPS_PROXY (CONNECT; certificate checked against the cluster name)', async () => {
    const result = await inSession(
      `export SSL_CERT_FILE='${rt.trust.certPem}';`,
      paymentsTlsUrl('/go/https'),
    );
    assertReachedPayments(result, '/go/https', { tls: true });
  });

  test('go: short name "payments" resolved by the agent, not the laptop', async () => {
    const result = await rt.exec([probe, paymentsUrl('/go/short-name', 'payments')]);
    assertReachedPayments(result, '/go/short-name');
  });

  test('go: a client with its own &http.Transport{} (Proxy unset) ignores the proxy variables → fails', async () => {
    const result = await rt.exec([probe, '-bare-transport', paymentsUrl('/go/bare-transport')]);
    assertFailed(result, /bare transport[\s\S]*go-probe failed: .*(no such host|lookup)/);
  });

  test('go: ALL_PROXY alone is not read by net/http (HTTP_PROXY unset → direct → fails)', async () => {
    const result = await inSession('unset HTTP_PROXY http_proxy;', paymentsUrl('/go/all-proxy-only'));
    assertFailed(result, /go-probe: proxy for \S+ is <nil>[\s\S]*go-probe failed: .*(no such host|lookup)/);
  });

  test('go: a cgo build with GODEBUG=netdns=cgo resolves cluster names through the native layer (getaddrinfo)', async () => {
    const result = await inSession(
      'export GODEBUG=netdns=cgo;',
      ['-lookup', paymentsUrl('/go/cgo-lookup')],
      cgoProbe,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), addresses.cluster);
  });

  test('go: the static build does not load the native layer: its lookup fails', async () => {
    const result = await rt.exec([probe, '-lookup', paymentsUrl('/go/static-lookup')]);
    assertFailed(result, /go-probe failed: .*(no such host|lookup)/);
  });

  test('go: a cgo build still dials with raw system calls: without a proxy it goes direct and fails', async () => {
    const result = await inSession(
      'export GODEBUG=netdns=cgo;',
      ['-bare-transport', paymentsUrl('/go/cgo-bare-transport')],
      cgoProbe,
    );
    assertFailed(
      result,
      new RegExp(
        `go-probe failed: .*dial tcp ${addresses.cluster.replaceAll('.', '\\.')}:\\d+: connect: network is unreachable`,
      ),
    );
  });
});
