/**
 * WebSocket client run from the cluster namespace: connects with `--header name=value`, reads the
 * greeting, sends `--messages` text messages and one binary one, and prints what came back as
 * one JSON line.
 */
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
    messages: { type: 'string', default: '10' },
  },
});
const headers = Object.fromEntries(
  (values.header ?? []).map((header) => {
    const at = header.indexOf('=');
    return [header.slice(0, at), header.slice(at + 1)];
  }),
);
const count = Number(values.messages);
const socket = new WebSocket(values.url ?? '', { headers, handshakeTimeout: 10_000 });
const received: unknown[] = [];
const timer = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ error: 'timed out after 15 s', received })}\n`);
  process.exit(1);
}, 15_000);
socket.on('message', (data, isBinary) => {
  received.push(isBinary ? { binaryBytes: (data as Buffer).length } : JSON.parse(String(data)));
  if (received.length === 1) {
    for (let i = 0; i < count; i++) socket.send(JSON.stringify({ n: i }));
    socket.send(Buffer.alloc(100_000, 9), { binary: true });
  }
  if (received.length === count + 2) socket.close(1000, 'done');
});
socket.on('close', (code) => {
  clearTimeout(timer);
  process.stdout.write(`${JSON.stringify({ closeCode: code, received })}\n`);
});
socket.on('error', (error) => {
  clearTimeout(timer);
  process.stdout.write(`${JSON.stringify({ error: error.message, received })}\n`);
  process.exit(1);
});
