/**
 * Ruby under `detour exec`: Net::HTTP reads http_proxy from the environment; with no proxy
 * variable, and for a raw TCPSocket, the native layer (LD_PRELOAD) routes it (getaddrinfo and
 * connect from libc). A real program (programs/ruby_probe.rb, standard library only) calls
 * payments, which only the agent's pod can resolve and reach.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { buildNativeLayer } from '../support/native-layer.ts';
import { addresses } from '../support/netns.ts';
import { assertReachedPayments, paymentsUrl, type RuntimeRig, useRuntimeRig } from './runtime-rig.ts';
import { programsDir, requireTool } from './toolchains.ts';

describe('ruby: real Net::HTTP and TCPSocket programs reach payments through the agent', {
  timeout: 240_000,
}, () => {
  const probe = join(programsDir, 'ruby_probe.rb');
  let ruby: string;
  let rt: RuntimeRig;

  /** The probe inside `detour exec`, after a shell prelude that adjusts the session's env. */
  const inSession = (prelude: string, mode: string, path: string) =>
    rt.exec(['bash', '-c', `${prelude} exec "$0" "$@"`, ruby, probe, mode, paymentsUrl(path)]);

  useRuntimeRig('rtrb', {
    prepare: async () => {
      await buildNativeLayer();
      ruby = requireTool('ruby', 'apt-get install ruby');
    },
    started: (started) => {
      rt = started;
    },
  });

  test('ruby: Net::HTTP via http_proxy (the session env)', async () => {
    const result = await inSession('', 'net-http', '/ruby/net-http-proxy');
    assertReachedPayments(result, '/ruby/net-http-proxy');
    assert.match(result.stderr, /ruby: net\/http proxy 127\.0\.0\.1:\d+/);
  });

  test('ruby: Net::HTTP with no proxy variable (the native layer routes it)', async () => {
    const result = await inSession('unset http_proxy HTTP_PROXY;', 'net-http', '/ruby/net-http-native');
    assertReachedPayments(result, '/ruby/net-http-native');
    assert.match(result.stderr, /ruby: net\/http proxy none/);
  });

  test("ruby: a raw TCPSocket by the cluster name; remote_address is the cluster's", async () => {
    const result = await inSession('', 'tcpsocket', '/ruby/tcpsocket');
    assertReachedPayments(result, '/ruby/tcpsocket');
    assert.match(result.stderr, new RegExp(`ruby: connected to ${addresses.cluster.replaceAll('.', '\\.')}`));
  });
});
