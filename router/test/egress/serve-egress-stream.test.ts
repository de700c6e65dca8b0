import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { serveEgressStream } from '@detour/router/egress/serve-egress-stream';
import type { TunnelConnection, TunnelStream } from '@detour/router/tunnel/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';

/** A tunnel whose server end serves egress streams as the agent does, dialing from this machine. */
async function egressTunnel() {
  const pair = await tunnelPair();
  pair.server.on('stream', (stream) => void serveEgressStream(stream, new DirectDialer()));
  return pair;
}

/** `allowHalfOpen`: the server may answer after the client ended (otherwise its socket closes on the client's end). */
async function listen(
  onSocket: (socket: net.Socket) => void,
  allowHalfOpen = false,
): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer({ allowHalfOpen }, onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** Opens a connect stream and waits for the agent's answer: its first header block, or its reset. */
async function connect(client: TunnelConnection, port: number): Promise<TunnelStream> {
  const stream = client.openStream({ kind: 'connect', host: '127.0.0.1', port });
  const [headers] = await once(stream, 'headers');
  assert.equal((headers as { connected: boolean }).connected, true);
  return stream;
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await sleep(20);
  assert.ok(condition(), what);
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('serveEgressStream (the agent side of egress) over a real tunnel and real sockets', () => {
  it('relays 16 MiB both ways intact; each side’s end reaches the other; nothing stays open', async () => {
    const { client, server, close } = await egressTunnel();
    // Answers with what it received once the client half-closed, then ends.
    const upstream = await listen((socket) => {
      collect(socket).then((received) => socket.end(received));
    }, true);
    const stream = await connect(client, upstream.port);
    const payload = Buffer.alloc(16 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4096) payload.writeUInt32BE(i, i);
    const answer = collect(stream);
    stream.end(payload);
    assert.equal(sha256(await answer), sha256(payload));
    await until(() => server.openStreams === 0 && client.openStreams === 0, 'streams left open');
    upstream.server.close();
    await close();
  });

  it('the upstream ending first still receives what the CLI sends after it (half-close the other way)', async () => {
    const { client, close } = await egressTunnel();
    const received = Promise.withResolvers<string>();
    const upstream = await listen((socket) => {
      socket.end('bye');
      collect(socket).then((data) => received.resolve(data.toString()));
    }, true);
    const stream = await connect(client, upstream.port);
    assert.equal((await collect(stream)).toString(), 'bye');
    stream.end('after the end');
    assert.equal(await received.promise, 'after the end');
    upstream.server.close();
    await close();
  });

  it('a refused dial is a reset carrying ECONNREFUSED', async () => {
    const { client, close } = await egressTunnel();
    const { server: probe, port } = await listen(() => {});
    await new Promise((resolve) => probe.close(resolve));
    const stream = client.openStream({ kind: 'connect', host: '127.0.0.1', port });
    const [error] = await once(stream, 'error');
    assert.equal((error as { code: string }).code, 'ECONNREFUSED');
    await close();
  });

  it('the upstream resetting its connection resets the stream with ECONNRESET', async () => {
    const { client, server, close } = await egressTunnel();
    const upstream = await listen((socket) => socket.once('data', () => socket.resetAndDestroy()));
    const stream = await connect(client, upstream.port);
    stream.write('hello');
    const [error] = await once(stream, 'error');
    assert.equal((error as { code: string }).code, 'ECONNRESET');
    await until(() => server.openStreams === 0, 'the agent kept the stream');
    upstream.server.close();
    await close();
  });

  it('the CLI resetting the stream closes the upstream connection', async () => {
    const { client, server, close } = await egressTunnel();
    const accepted = Promise.withResolvers<net.Socket>();
    const upstream = await listen((socket) => accepted.resolve(socket.resume()));
    const stream = await connect(client, upstream.port);
    const socket = await accepted.promise;
    const closed = once(socket, 'close');
    stream.reset('DETOUR_STREAM_CANCELLED', 'the app went away');
    await closed;
    await until(() => server.openStreams === 0, 'the agent kept the stream');
    upstream.server.close();
    await close();
  });

  it('the tunnel going away closes every upstream connection', async () => {
    const { client, close } = await egressTunnel();
    const sockets: net.Socket[] = [];
    const upstream = await listen((socket) => sockets.push(socket.resume()));
    await Promise.all(
      [1, 2, 3].map(() => connect(client, upstream.port).then((s) => s.on('error', () => {}))),
    );
    await until(() => sockets.length === 3, 'the upstream saw three connections');
    const closed = sockets.map((socket) => once(socket, 'close'));
    await close();
    await Promise.all(closed);
    upstream.server.close();
  });
});
