import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import {
  encodeFrameHeader,
  FrameType,
  PROTOCOL_NAME,
  PROTOCOL_VERSION,
  TunnelCode,
  TunnelConnection,
  type TunnelEndVersion,
  type TunnelStream,
  TunnelVersionError,
} from '@detour/router/tunnel/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';
import { frameJson, helloAs, jsonFrame, scriptedAgent } from '@detour/router/tunnel/scripted-peer';

const connectOpen = { kind: 'connect', host: 'payments', port: 80 } as const;

function echo(stream: TunnelStream): void {
  pipeline(stream, stream).catch(() => {});
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('tunnel connection', () => {
  it('carries a 32 MB stream both ways intact', async () => {
    const { client, server, close } = await tunnelPair();
    server.on('stream', echo);
    const payload = Buffer.alloc(32 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4096) payload.writeUInt32BE(i, i);
    const stream = client.openStream(connectOpen);
    const [received] = await Promise.all([collect(stream), pipeline(Readable.from([payload]), stream)]);
    assert.equal(sha256(received), sha256(payload));
    await close();
  });

  it('delivers the open metadata and header blocks in order with the bytes', async () => {
    const { client, server, close } = await tunnelPair();
    server.on('stream', (stream) => {
      assert.deepEqual(stream.open, connectOpen);
      stream.writeHeaders({ connected: true, remoteAddress: '198.18.0.9:80' });
      stream.write('body');
      stream.endWithHeaders({ trailers: [['grpc-status', '0']] });
      stream.resume();
    });
    const stream = client.openStream(connectOpen);
    const events: unknown[] = [];
    stream.on('headers', (value) => events.push(value));
    stream.on('data', (chunk: Buffer) => events.push(chunk.toString()));
    stream.end();
    await once(stream, 'end');
    assert.deepEqual(events, [
      { connected: true, remoteAddress: '198.18.0.9:80' },
      'body',
      { trailers: [['grpc-status', '0']] },
    ]);
    await close();
  });

  it('runs 1,000 concurrent streams', async () => {
    const { client, server, close } = await tunnelPair();
    server.on('stream', echo);
    const results = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const stream = client.openStream(connectOpen);
        stream.end(`stream ${i}`);
        return (await collect(stream)).toString();
      }),
    );
    assert.deepEqual(
      results,
      Array.from({ length: 1000 }, (_, i) => `stream ${i}`),
    );
    assert.equal(client.openStreams, 0);
    await close();
  });

  it('keeps a fast stream flowing while a slow reader holds its own stream back', async () => {
    const { client, server, close } = await tunnelPair();
    const slowWriterDone = Promise.withResolvers<void>();
    server.on('stream', (stream) => {
      if ((stream.open as { port: number }).port === 1) {
        stream.on('error', () => {});
        // Writes far more than one window to a reader that never reads.
        const chunk = Buffer.alloc(64 * 1024);
        const pump = () => {
          while (stream.write(chunk)) {}
        };
        stream.on('drain', pump);
        pump();
        slowWriterDone.resolve();
      } else echo(stream);
    });
    const slow = client.openStream({ kind: 'connect', host: 'slow', port: 1 });
    slow.pause();
    await slowWriterDone.promise;
    const fast = client.openStream(connectOpen);
    const data = Buffer.alloc(8 * 1024 * 1024, 1);
    const [echoed] = await Promise.all([collect(fast), pipeline(Readable.from([data]), fast)]);
    assert.equal(echoed.length, data.length);
    // The slow stream buffered at most about one window, not everything the writer wanted to send.
    assert.ok(slow.readableLength <= 2 * 1024 * 1024, `slow stream buffered ${slow.readableLength} bytes`);
    slow.destroy();
    await close();
  });

  it('sends what a stream buffered while the socket was congested in one write, not one per turn', async () => {
    const { server, client, clientSocket: socket, close } = await tunnelPair();
    server.on('stream', (stream) => stream.resume().on('end', () => stream.end()));
    // Counts the socket's writes (each is one writev or write syscall batch) from here on.
    let writes = 0;
    for (const method of ['_write', '_writev'] as const) {
      const original = socket[method] as (...args: unknown[]) => void;
      socket[method] = (...args: unknown[]) => {
        writes++;
        original.apply(socket, args);
      };
    }
    try {
      const stream = client.openStream(connectOpen);
      // Eight chunks at once: the first fills the socket's buffer, the other seven wait in the stream.
      for (let i = 0; i < 8; i++) stream.write(Buffer.alloc(64 * 1024, i));
      stream.end();
      await once(stream.resume(), 'end');
      assert.ok(writes <= 4, `${writes} socket writes for 8 chunks written together (one per chunk before)`);
    } finally {
      await close();
    }
  });

  it('propagates a reset with its code to the peer', async () => {
    const { client, server, close } = await tunnelPair();
    server.on('stream', (stream) => stream.reset('ECONNREFUSED', 'connect ECONNREFUSED 198.18.0.9:80'));
    const stream = client.openStream(connectOpen);
    const [error] = (await once(stream, 'error')) as [{ code: string; message: string }];
    assert.equal(error.code, 'ECONNREFUSED');
    assert.match(error.message, /ECONNREFUSED 198\.18\.0\.9:80/);
    await close();
  });

  it('resets the peer stream when the local side is destroyed mid-transfer', async () => {
    const { client, server, close } = await tunnelPair();
    const serverError = Promise.withResolvers<{ code: string }>();
    server.on('stream', (stream) => stream.on('error', serverError.resolve).resume());
    const stream = client.openStream(connectOpen);
    stream.write('partial');
    stream.destroy();
    assert.equal((await serverError.promise).code, TunnelCode.cancel);
    await close();
  });

  it('answers control requests and reports their errors', async () => {
    const { client, server, close } = await tunnelPair();
    server.onControl((method, params) => {
      if (method === 'session.register') return { registered: (params as { id: string }).id };
      throw Object.assign(new Error('unknown method'), { code: 'DETOUR_UNKNOWN_METHOD' });
    });
    assert.deepEqual(await client.request('session.register', { id: 's1' }), { registered: 's1' });
    await assert.rejects(client.request('nope', {}), { code: 'DETOUR_UNKNOWN_METHOD' });
    await close();
  });

  it('fails every open stream when the tunnel drops', async () => {
    const { client, server, close } = await tunnelPair();
    server.on('stream', (stream) => stream.resume());
    const stream = client.openStream(connectOpen);
    const failed = once(stream, 'error');
    server.close(TunnelCode.closed, 'agent shutting down');
    const [error] = (await failed) as [{ code: string; message: string }];
    assert.equal(error.code, TunnelCode.closed);
    assert.match(error.message, /agent shutting down/);
    await close();
  });

  it('declares a silent peer dead after three heartbeats', async () => {
    let muted: net.Socket | undefined;
    const listener = net.createServer(async (socket) => {
      muted = socket;
      // Answers the hello, then goes silent without closing (a laptop that slept).
      await once(socket, 'data');
      const ack = Buffer.from(JSON.stringify({ protocol: PROTOCOL_NAME, version: 1, agent: 'mute' }));
      socket.write(Buffer.concat([encodeFrameHeader(FrameType.helloAck, 0, 0, ack.length), ack]));
      socket.pause();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const { port } = listener.address() as net.AddressInfo;
    const client = await TunnelConnection.connect(
      net.connect(port, '127.0.0.1'),
      { token: 'x', client: 'c' },
      { heartbeatMs: 50 },
    );
    const [reason] = (await once(client, 'close')) as [{ code: string }];
    assert.equal(reason.code, TunnelCode.timeout);
    muted?.destroy();
    listener.close();
  });
});

describe('tunnel handshake', () => {
  async function agentWith(tokens: string[]) {
    const rejected: Error[] = [];
    const listener = net.createServer((socket) => {
      TunnelConnection.accept(socket, { tokens, agent: 'a' }).catch((error: Error) => rejected.push(error));
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    return { port: (listener.address() as net.AddressInfo).port, rejected, close: () => listener.close() };
  }

  it('refuses a wrong token with a message on both ends', async () => {
    const agent = await agentWith(['right']);
    await assert.rejects(
      TunnelConnection.connect(net.connect(agent.port, '127.0.0.1'), { token: 'wrong', client: 'c' }),
      {
        code: TunnelCode.auth,
        message: /session token was not accepted/,
      },
    );
    assert.equal(agent.rejected[0]?.message.match(/session token was not accepted/)?.length, 1);
    agent.close();
  });
});

describe('tunnel protocol versions: each end refuses another, naming both versions and the fix', () => {
  const fix = (peer: TunnelEndVersion) => `the fix for a peer of v${peer.version} (${peer.release})`;

  it('the agent refuses a CLI of another version, and tells it its own version and release', async () => {
    const rejected = Promise.withResolvers<Error>();
    const listener = net.createServer((socket) => {
      TunnelConnection.accept(socket, { tokens: ['t'], agent: 'a', release: '0.1.0', versionFix: fix }).catch(
        rejected.resolve,
      );
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const [goaway] = await helloAs((listener.address() as net.AddressInfo).port, {
      version: 99,
      release: '9.0.0',
    });
    assert.equal(goaway?.type, FrameType.goaway);
    const expected = `the CLI speaks tunnel protocol v99 (detour 9.0.0) but this agent speaks v${PROTOCOL_VERSION} (detour 0.1.0): the fix for a peer of v99 (9.0.0)`;
    assert.deepEqual(frameJson(goaway), {
      code: TunnelCode.version,
      message: expected,
      version: PROTOCOL_VERSION,
      release: '0.1.0',
    });
    const error = await rejected.promise;
    assert.ok(error instanceof TunnelVersionError);
    assert.equal(error.message, expected);
    assert.deepEqual(error.peer, { version: 99, release: '9.0.0' });
    listener.close();
  });

  it('the CLI words an agent’s refusal itself: both versions and the CLI’s fix', async () => {
    const agent = await scriptedAgent(() =>
      jsonFrame(FrameType.goaway, {
        code: TunnelCode.version,
        message: 'in the agent’s words',
        version: 2,
        release: '0.2.0',
      }),
    );
    await assert.rejects(
      TunnelConnection.connect(
        net.connect(agent.port, '127.0.0.1'),
        { token: 't', client: 'c' },
        { release: '0.1.0', versionFix: fix },
      ),
      (error: Error) => {
        assert.ok(error instanceof TunnelVersionError);
        assert.equal(
          error.message,
          `the agent speaks tunnel protocol v2 (detour 0.2.0) but this CLI speaks v${PROTOCOL_VERSION} (detour 0.1.0): the fix for a peer of v2 (0.2.0)`,
        );
        return true;
      },
    );
    const [hello] = await agent.received;
    assert.equal(frameJson(hello).release, '0.1.0', 'the CLI says its release in the hello');
    agent.close();
  });

  it('the CLI refuses an agent that answered with another version, and tells it its own', async () => {
    const agent = await scriptedAgent(() =>
      jsonFrame(FrameType.helloAck, { protocol: PROTOCOL_NAME, version: 2, agent: 'new', release: '0.2.0' }),
    );
    await assert.rejects(
      TunnelConnection.connect(
        net.connect(agent.port, '127.0.0.1'),
        { token: 't', client: 'c' },
        { release: '0.1.0' },
      ),
      {
        code: TunnelCode.version,
        message: `the agent speaks tunnel protocol v2 (detour 0.2.0) but this CLI speaks v${PROTOCOL_VERSION} (detour 0.1.0): use a detour CLI and agent of the same release`,
      },
    );
    const [, goaway] = await agent.received;
    assert.deepEqual(
      { type: goaway?.type, version: frameJson(goaway).version, release: frameJson(goaway).release },
      { type: FrameType.goaway, version: PROTOCOL_VERSION, release: '0.1.0' },
    );
    agent.close();
  });
});

describe('tunnel stream bookkeeping', () => {
  it('forgets a stream once both ends ended, even if its reader never drains it', async () => {
    const { client, server, close } = await tunnelPair();
    server.on('stream', (stream) => {
      stream.resume();
      stream.end('reply nobody reads');
    });
    const stream = client.openStream(connectOpen);
    stream.end();
    stream.pause();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(client.openStreams, 0);
    assert.equal(server.openStreams, 0);
    await close();
  });
});
