/**
 * curl under `detour exec`: --socks5-hostname, -x, the proxy variables the session sets, and with
 * no proxy at all the native layer (LD_PRELOAD). curl calls payments, which only the agent's pod
 * can resolve and reach.
 */
import { describe, test } from 'node:test';
import {
  assertFailed,
  assertReachedPayments,
  paymentsTlsUrl,
  paymentsUrl,
  type RuntimeRig,
  useRuntimeRig,
} from './runtime-rig.ts';
import { requireTool } from './toolchains.ts';

describe('curl: reaches payments through the agent', { timeout: 120_000 }, () => {
  let rt: RuntimeRig;

  /** curl inside `detour exec`, with a shell prelude (env changes) and curl's own arguments. */
  const curl = (prelude: string, args: string, path: string, name?: string) =>
    curlUrl(prelude, args, paymentsUrl(path, name));
  const curlUrl = (prelude: string, args: string, url: string) =>
    rt.exec(['bash', '-c', `${prelude} exec curl -sS --fail --max-time 10 ${args} "$0"`, url]);

  useRuntimeRig('rtc', {
    prepare: () => requireTool('curl', 'apt-get install curl'),
    started: (started) => {
      rt = started;
    },
  });

  test('curl: --socks5-hostname $DETOUR_PROXY (remote DNS)', async () => {
    const result = await curl('', '--socks5-hostname "$DETOUR_PROXY"', '/curl/socks5-hostname');
    assertReachedPayments(result, '/curl/socks5-hostname');
  });

  test('curl: -x $HTTP_PROXY (absolute-URI request)', async () => {
    const result = await curl('', '-x "$HTTP_PROXY"', '/curl/x');
    assertReachedPayments(result, '/curl/x');
  });

  test('curl: -x $HTTP_PROXY --proxytunnel (HTTP CONNECT)', async () => {
    const result = await curl('', '-x "$HTTP_PROXY" --proxytunnel', '/curl/connect');
    assertReachedPayments(result, '/curl/connect');
  });

  test('curl: plain curl with the session env (http_proxy)', async () => {
    const result = await curl('', '', '/curl/env');
    assertReachedPayments(result, '/curl/env');
  });

  test('curl: plain curl https:// with the session env (https_proxy, CONNECT; certificate checked)', async () => {
    const result = await curlUrl('', `--cacert '${rt.trust.certPem}'`, paymentsTlsUrl('/curl/https'));
    assertReachedPayments(result, '/curl/https', { tls: true });
  });

  test('curl: plain curl with only ALL_PROXY=socks5h:// (http_proxy unset)', async () => {
    const result = await curl('unset http_proxy HTTP_PROXY all_proxy;', '', '/curl/all-proxy');
    assertReachedPayments(result, '/curl/all-proxy');
  });

  test('curl: plain curl with the short name "payments"', async () => {
    const result = await curl('', '', '/curl/short-name', 'payments');
    assertReachedPayments(result, '/curl/short-name');
  });

  test('curl: --noproxy "*" (no proxy at all: the native layer resolves and forwards)', async () => {
    const result = await curl('', `--noproxy '*'`, '/curl/noproxy');
    assertReachedPayments(result, '/curl/noproxy');
  });

  test('curl: --noproxy "*" https:// (TLS in curl, certificate checked against the cluster name)', async () => {
    const result = await curlUrl(
      '',
      `--noproxy '*' --cacert '${rt.trust.certPem}'`,
      paymentsTlsUrl('/curl/noproxy-https'),
    );
    assertReachedPayments(result, '/curl/noproxy-https', { tls: true });
  });

  test('curl: --socks5 (local DNS): the native layer resolves the name, the proxy dials its address remotely', async () => {
    const result = await curl('', '--socks5 "$DETOUR_PROXY"', '/curl/socks5-local-dns');
    assertReachedPayments(result, '/curl/socks5-local-dns');
  });

  test('curl: with only upper-case HTTP_PROXY (ignored: httpoxy) the native layer routes the direct connection', async () => {
    const result = await curl('unset http_proxy ALL_PROXY all_proxy;', '', '/curl/upper-only');
    assertReachedPayments(result, '/curl/upper-only');
  });

  test('curl: a name the cluster does not know fails as an unknown host', async () => {
    const result = await curl('', `--noproxy '*'`, '/curl/unknown', 'nope.staging.svc.cluster.local');
    assertFailed(result, /Could not resolve host: nope\.staging\.svc\.cluster\.local/);
  });
});
