import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface EchoMessage {
  text: string;
  app: string;
}

/**
 * The Echo service definition from echo.proto: for the test apps and clients here and for the
 * agent's unit tests (agent/test/inbound).
 */
export function loadEcho(): { Echo: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync(fileURLToPath(new URL('./echo.proto', import.meta.url)), {
    keepCase: true,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    detour: { test: { Echo: grpc.ServiceClientConstructor } };
  };
  return { Echo: loaded.detour.test.Echo };
}
