/**
 * A grpc-js server for the gRPC tests: `Say` echoes one message, `Chat` echoes a stream; answers
 * carry the app's name. `node grpc-app.ts --name local --port 50051`.
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { type EchoMessage, loadEcho } from './echo-proto.ts';

const { values } = parseArgs({
  options: { name: { type: 'string', default: 'grpc' }, port: { type: 'string', default: '50051' } },
});
const name = values.name ?? 'grpc';
const { Echo } = loadEcho();
const server = new grpc.Server();
server.addService(Echo.service, {
  Say: (call: grpc.ServerUnaryCall<EchoMessage, EchoMessage>, callback: grpc.sendUnaryData<EchoMessage>) => {
    const trailer = new grpc.Metadata();
    trailer.set('x-app', name);
    callback(null, { text: call.request.text, app: name }, trailer);
  },
  Chat: (call: grpc.ServerDuplexStream<EchoMessage, EchoMessage>) => {
    call.on('data', (message: EchoMessage) => call.write({ text: message.text, app: name }));
    call.on('end', () => call.end());
  },
});
server.bindAsync(`127.0.0.1:${values.port}`, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.stdout.write(`${JSON.stringify({ event: 'app.listening', app: name, port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
