/**
 * A grpc-js server for the gRPC tests: `Say` echoes one message, `Chat` echoes a stream; answers
 * carry the app's name, and `Say`'s the `x-dev` metadata it received (`dev`).
 * `node grpc-app.ts --name local --port 50051 [--host 127.0.0.1]`.
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { type EchoMessage, loadEcho } from './echo-proto.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'grpc' },
    port: { type: 'string', default: '50051' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});
const name = values.name ?? 'grpc';
const { Echo } = loadEcho();
const server = new grpc.Server();
server.addService(Echo.service, {
  Say: (call: grpc.ServerUnaryCall<EchoMessage, EchoMessage>, callback: grpc.sendUnaryData<EchoMessage>) => {
    const trailer = new grpc.Metadata();
    trailer.set('x-app', name);
    const dev = call.metadata.get('x-dev')[0];
    callback(null, { text: call.request.text, app: name, ...(dev ? { dev: String(dev) } : {}) }, trailer);
  },
  Chat: (call: grpc.ServerDuplexStream<EchoMessage, EchoMessage>) => {
    call.on('data', (message: EchoMessage) => call.write({ text: message.text, app: name }));
    call.on('end', () => call.end());
  },
});
server.bindAsync(`${values.host}:${values.port}`, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.stdout.write(`${JSON.stringify({ event: 'app.listening', app: name, port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
