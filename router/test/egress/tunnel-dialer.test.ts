// The CLI's dialer into the cluster while its tunnel reconnects (a broken port-forward, a laptop
// waking up): a connect or lookup made with no tunnel up waits for one, up to reconnectWaitMs, then
// fails with DETOUR_TUNNEL_DOWN; a caller that gives up meanwhile stops the wait. Real tunnel, real
// sockets: the agent's side is serveEgressStream dialing a loopback server.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { serveEgressStream } from '@detour/router/egress/serve-egress-stream';
import { TunnelDialer } from '@detour/router/egress/tunnel-dialer';
import type { TunnelConnection } from '@detour/router/tunnel/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';

async function echoServer(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('TunnelDialer while the tunnel is down', () => {
  it('a connect made before the tunnel is back waits for it, then goes through', async () => {
    const pair = await tunnelPair();
    pair.server.on('stream', (stream) => void serveEgressStream(stream, new DirectDialer()));
    const echo = await echoServer();
    let current: TunnelConnection | undefined;
    const dialer = new TunnelDialer(() => current, { reconnectWaitMs: 5_000 });
    const began = Date.now();
    const reconnected = setTimeout(() => {
      current = pair.client;
    }, 300);
    try {
      const stream = await dialer.connect('127.0.0.1', echo.port);
      const waited = Date.now() - began;
      assert.ok(waited >= 250 && waited < 2_000, `waited ${waited} ms for the tunnel`);
      stream.end('ping');
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'ping');
    } finally {
      clearTimeout(reconnected);
      echo.server.close();
      await pair.close();
    }
  });

  it('no tunnel within the wait: DETOUR_TUNNEL_DOWN saying how long it waited; without a wait, at once', async () => {
    const waiting = new TunnelDialer(() => undefined, { reconnectWaitMs: 200 });
    const began = Date.now();
    await assert.rejects(waiting.connect('payments', 80), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'DETOUR_TUNNEL_DOWN');
      assert.match(error.message, /the tunnel to the agent is down \(waited 0\.2 s for it\)/);
      return true;
    });
    assert.ok(Date.now() - began >= 200);
    await assert.rejects(waiting.lookup('payments', 0), { code: 'DETOUR_TUNNEL_DOWN' });
    const atOnce = new TunnelDialer(() => undefined);
    const start = Date.now();
    await assert.rejects(atOnce.connect('payments', 80), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'DETOUR_TUNNEL_DOWN');
      assert.match(error.message, /the tunnel to the agent is down, so cluster names/);
      return true;
    });
    assert.ok(Date.now() - start < 100);
  });

  it('a caller that gives up while it waits stops the wait', async () => {
    const dialer = new TunnelDialer(() => undefined, { reconnectWaitMs: 10_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const began = Date.now();
    await assert.rejects(dialer.connect('payments', 80, controller.signal), { code: 'ABORT_ERR' });
    assert.ok(Date.now() - began < 1_000, `stopped after ${Date.now() - began} ms`);
  });
});
