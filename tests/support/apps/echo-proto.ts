import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface EchoMessage {
  text: string;
  app: string;
  dev?: string;
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

/** A client of the Echo service, typed (loadPackageDefinition's clients are not). */
export type EchoClient = grpc.Client & {
  Say: (
    message: EchoMessage,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, reply: EchoMessage) => void,
  ) => grpc.ClientUnaryCall;
  Chat: (
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ) => grpc.ClientDuplexStream<EchoMessage, EchoMessage>;
};

/** An insecure Echo client for `target` (`host:port`, `dns:///host:port`, ...). */
export function echoClient(target: string): EchoClient {
  const { Echo } = loadEcho();
  return new Echo(target, grpc.credentials.createInsecure()) as unknown as EchoClient;
}
