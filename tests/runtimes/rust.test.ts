/**
 * Rust under `detour exec`: std's TcpStream resolves with libc's getaddrinfo and connects with
 * libc's connect, so the native layer (LD_PRELOAD) routes it with no proxy support in the program.
 * A real program (programs/rust_probe.rs, std only, compiled with the machine's rustc) calls
 * payments, which only the agent's pod can resolve and reach.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildNativeLayer } from '../support/native-layer.ts';
import { addresses } from '../support/netns.ts';
import {
  assertFailed,
  assertReachedPayments,
  paymentsUrl,
  ports,
  type RuntimeRig,
  useRuntimeRig,
} from './runtime-rig.ts';
import { buildRust, scratchDir } from './toolchains.ts';

describe('rust: a real std::net program reaches payments through the agent (native layer)', {
  timeout: 240_000,
}, () => {
  const scratch = scratchDir('rust');
  let probe: string;
  let rt: RuntimeRig;

  useRuntimeRig('rtr', {
    prepare: async () => {
      await buildNativeLayer();
      probe = await buildRust(scratch.path);
    },
    started: (started) => {
      rt = started;
    },
    cleanup: () => scratch.remove(),
  });

  test('rust: TcpStream::connect by the cluster name; peer_addr is the cluster address', async () => {
    const result = await rt.exec([probe, paymentsUrl('/rust/tcpstream')]);
    assertReachedPayments(result, '/rust/tcpstream');
    assert.match(
      result.stderr,
      new RegExp(`rust: connected to ${addresses.cluster.replaceAll('.', '\\.')}:${ports.payments}`),
    );
  });

  test('rust: the short name "payments"', async () => {
    const result = await rt.exec([probe, paymentsUrl('/rust/short-name', 'payments')]);
    assertReachedPayments(result, '/rust/short-name');
  });

  test('rust: without detour the same program cannot resolve the name', async () => {
    const result = await rt.inLaptop([probe, paymentsUrl('/rust/without')]);
    assertFailed(result, /rust probe failed: failed to lookup address information/);
  });
});
