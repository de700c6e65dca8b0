import net from 'node:net';
import { TunnelConnection, type TunnelConnectionOptions } from '@detour/router/tunnel/index';

/** A real loopback TCP connection with a tunnel handshake done on both ends: for tests of every package. */
export async function tunnelPair(options: TunnelConnectionOptions = {}): Promise<{
  client: TunnelConnection;
  server: TunnelConnection;
  /** The client's TCP socket, for tests that watch what the tunnel writes to it. */
  clientSocket: net.Socket;
  close: () => Promise<void>;
}> {
  const accepted = Promise.withResolvers<TunnelConnection>();
  const listener = net.createServer((socket) => {
    TunnelConnection.accept(socket, { ...options, tokens: ['secret'], agent: 'test-agent' }).then(
      accepted.resolve,
      accepted.reject,
    );
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address() as net.AddressInfo;
  const clientSocket = net.connect(port, '127.0.0.1');
  const client = await TunnelConnection.connect(
    clientSocket,
    { token: 'secret', client: 'test-cli' },
    options,
  );
  const server = await accepted.promise;
  return {
    client,
    server,
    clientSocket,
    close: async () => {
      client.close();
      server.close();
      await new Promise((resolve) => listener.close(resolve));
    },
  };
}
