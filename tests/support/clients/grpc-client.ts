/**
 * gRPC client run from the cluster namespace, as a caller's pod would: one unary call and one
 * bidirectional stream of `--messages` messages, with `--header name=value` as metadata.
 * Prints one JSON line: {unary, unaryTrailer, chat: [...]} or {error, code}.
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { type EchoMessage, echoClient } from '../apps/echo-proto.ts';

const { values } = parseArgs({
  options: {
    target: { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
    messages: { type: 'string', default: '5' },
  },
});
const client = echoClient(values.target ?? '');
const metadata = new grpc.Metadata();
for (const header of values.header ?? []) {
  const at = header.indexOf('=');
  metadata.set(header.slice(0, at), header.slice(at + 1));
}
const deadline = () => ({ deadline: Date.now() + 10_000 });

function unary(): Promise<{ reply: EchoMessage; trailer: string | undefined }> {
  return new Promise((resolve, reject) => {
    let trailer: string | undefined;
    const call = client.Say({ text: 'hello', app: '' }, metadata, deadline(), (error, reply) =>
      error ? reject(error) : setImmediate(() => resolve({ reply, trailer })),
    );
    call.on('status', (status) => {
      trailer = status.metadata.get('x-app')[0]?.toString();
    });
  });
}

function chat(count: number): Promise<EchoMessage[]> {
  return new Promise((resolve, reject) => {
    const replies: EchoMessage[] = [];
    const call = client.Chat(metadata, deadline());
    // Bidirectional: send the next message only after the previous reply came back.
    let sent = 0;
    const next = () => {
      if (sent === count) return call.end();
      call.write({ text: `message ${sent++}`, app: '' });
    };
    call.on('data', (reply: EchoMessage) => {
      replies.push(reply);
      next();
    });
    call.on('error', reject);
    call.on('end', () => resolve(replies));
    next();
  });
}

try {
  const { reply, trailer } = await unary();
  const replies = await chat(Number(values.messages));
  process.stdout.write(`${JSON.stringify({ unary: reply, unaryTrailer: trailer, chat: replies })}\n`);
  client.close();
} catch (error) {
  const failure = error as grpc.ServiceError;
  process.stdout.write(`${JSON.stringify({ error: failure.message, code: failure.code })}\n`);
  client.close();
  process.exitCode = 1;
}
