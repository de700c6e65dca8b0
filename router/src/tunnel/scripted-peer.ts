// Peers that speak the wire protocol by hand, for tests of every package: an end of another
// protocol version, or one that breaks the handshake, which TunnelConnection never is.
import net from 'node:net';
import { encodeFrameHeader, FrameDecoder } from './frame-codec.ts';
import { type Frame, FrameType, type FrameTypeCode, PROTOCOL_NAME } from './protocol.ts';

/** One frame on stream 0 with a JSON payload, as bytes. */
export function jsonFrame(type: FrameTypeCode, body: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(body));
  return Buffer.concat([encodeFrameHeader(type, 0, 0, payload.length), payload]);
}

/** A frame's JSON payload. */
export function frameJson(frame: Frame | undefined): Record<string, unknown> {
  return JSON.parse(String(frame?.payload)) as Record<string, unknown>;
}

async function framesUntilClosed(socket: net.Socket, onFrame: (frame: Frame, index: number) => void) {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  for await (const chunk of socket) {
    for (const frame of decoder.push(chunk as Buffer)) onFrame(frame, frames.push(frame) - 1);
  }
  return frames;
}

/**
 * A listening agent that answers a CLI's first frame (its hello) with `answer(hello)` and resolves
 * `received` with every frame the CLI sent once the CLI closed.
 */
export async function scriptedAgent(answer: (hello: Frame) => Buffer) {
  const received = Promise.withResolvers<Frame[]>();
  const listener = net.createServer((socket) => {
    framesUntilClosed(socket, (frame, index) => {
      if (index === 0) socket.write(answer(frame));
    }).then(received.resolve, received.reject);
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address() as net.AddressInfo;
  return { port, received: received.promise, close: () => listener.close() };
}

/** A CLI of protocol `version` saying hello to the agent at port: the frames the agent answered, until it closed. */
export function helloAs(
  port: number,
  hello: { version: number; release?: string; token?: string },
): Promise<Frame[]> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(
    jsonFrame(FrameType.hello, { protocol: PROTOCOL_NAME, client: 'scripted-cli', token: 't', ...hello }),
  );
  return framesUntilClosed(socket, () => {});
}
