import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import {
  encodeFrameHeader,
  FrameDecoder,
  FrameType,
  type FrameTypeCode,
  PROTOCOL_NAME,
  TunnelConnection,
  TunnelProtocolError,
} from '@detour/router/tunnel/index';

/** Seeded so that a failure reproduces: the seed is in the test output. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function frame(type: FrameTypeCode, flags: number, stream: number, payload: Buffer | string): Buffer {
  const body = Buffer.from(payload);
  return Buffer.concat([encodeFrameHeader(type, flags, stream, body.length), body]);
}

const hello = frame(
  FrameType.hello,
  0,
  0,
  JSON.stringify({ protocol: PROTOCOL_NAME, version: 1, token: 'secret', client: 'fuzz' }),
);
const validSession = Buffer.concat([
  frame(FrameType.open, 0, 1, JSON.stringify({ kind: 'connect', host: 'payments', port: 80 })),
  frame(FrameType.data, 0, 1, 'hello'),
  frame(FrameType.window, 0, 1, Buffer.from([0, 0, 1, 0])),
  frame(FrameType.headers, 0, 1, '{"a":1}'),
  frame(FrameType.ping, 0, 0, Buffer.alloc(8)),
  frame(FrameType.control, 0, 0, JSON.stringify({ type: 'event', name: 'x', data: 1 })),
  frame(FrameType.data, 1, 1, ''),
  frame(FrameType.reset, 0, 1, JSON.stringify({ code: 'X', message: 'y' })),
]);

function mutate(input: Buffer, random: () => number): Buffer {
  const out = Buffer.from(input);
  const edits = 1 + Math.floor(random() * 8);
  for (let i = 0; i < edits; i++) out[Math.floor(random() * out.length)] = Math.floor(random() * 256);
  if (random() < 0.2) return out.subarray(0, Math.floor(random() * out.length));
  return out;
}

describe('frame decoder', () => {
  it('hands a DATA frame that straddles reads out as pieces of those reads, the flags on the last', () => {
    const payload = Buffer.alloc(100_000, 0x61);
    const bytes = Buffer.concat([frame(FrameType.data, 1, 3, payload), frame(FrameType.ping, 0, 0, 'x')]);
    // Each read in its own memory, as a socket delivers them.
    const reads = [[0, 30_000], [30_000, 70_000], [70_000]].map(([from, to]) =>
      Buffer.from(bytes.subarray(from, to)),
    );
    const decoder = new FrameDecoder();
    const frames = reads.flatMap((read) => decoder.push(read));
    const data = frames.filter((f) => f.type === FrameType.data);
    assert.deepEqual(
      data.map((f) => [f.stream, f.flags, f.payload.length]),
      [
        [3, 0, 30_000 - 10],
        [3, 0, 40_000],
        [3, 1, 30_010],
      ],
    );
    assert.deepEqual(Buffer.concat(data.map((f) => f.payload)), payload);
    // Views of the reads, not copies.
    assert.deepEqual(
      data.map((f, i) => f.payload.buffer === reads[i]?.buffer),
      [true, true, true],
    );
    assert.equal(frames.at(-1)?.type, FrameType.ping);
  });
});

describe('frame decoder fuzz', () => {
  it('either decodes or throws TunnelProtocolError on 5,000 random and mutated inputs', () => {
    const seed = 20261121;
    const random = prng(seed);
    for (let i = 0; i < 5000; i++) {
      const input =
        i % 2
          ? mutate(validSession, random)
          : Buffer.from(Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
      const decoder = new FrameDecoder();
      try {
        // Fed in random splits: frame boundaries must not depend on chunking.
        let offset = 0;
        while (offset < input.length) {
          const size = 1 + Math.floor(random() * 40);
          decoder.push(input.subarray(offset, offset + size));
          offset += size;
        }
      } catch (error) {
        assert.ok(error instanceof TunnelProtocolError, `seed ${seed} iteration ${i}: ${String(error)}`);
      }
    }
  });
});

describe('agent under malformed connections', () => {
  it('closes each offending connection and keeps serving a healthy one', async () => {
    const closedWith: string[] = [];
    const listener = net.createServer((socket) => {
      TunnelConnection.accept(socket, { tokens: ['secret'], agent: 'fuzz-agent' })
        .then((connection) => {
          connection.on('stream', (stream) => pipeline(stream, stream).catch(() => {}));
          connection.on('close', (reason) => closedWith.push(reason?.message ?? 'closed'));
        })
        .catch((error: Error) => closedWith.push(error.message));
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const { port } = listener.address() as net.AddressInfo;
    const healthy = await TunnelConnection.connect(net.connect(port, '127.0.0.1'), {
      token: 'secret',
      client: 'healthy',
    });

    const random = prng(7);
    let closedByAgent = 0;
    for (let i = 0; i < 200; i++) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.resume();
      socket.write(Buffer.concat([hello, mutate(validSession, random)]));
      const closed = once(socket, 'close');
      const timer = setTimeout(() => socket.destroy(), 200);
      await closed;
      clearTimeout(timer);
      if (socket.destroyed && closedWith.length > 0) closedByAgent++;
    }
    assert.ok(closedByAgent > 100, `the agent closed ${closedByAgent} of 200 malformed connections`);
    assert.ok(
      closedWith.some((reason) => /tunnel protocol error/.test(reason)),
      'every close names the protocol error',
    );

    const stream = healthy.openStream({ kind: 'connect', host: 'payments', port: 80 });
    stream.end('still here');
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'still here');
    healthy.close();
    listener.close();
  });
});
