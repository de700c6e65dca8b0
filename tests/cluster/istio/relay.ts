// node relay.ts LISTEN TARGET   (each: tcp:HOST:PORT or unix:PATH)
//
// Byte relay between a TCP port and a Unix socket. A sidecar in a network namespace reaches istiod on
// the host's loopback through a pair of them: inside the namespace tcp:127.0.0.1:15012 -> unix:SOCK,
// on the host unix:SOCK -> tcp:127.0.0.1:15012. A Unix socket is a file, visible from every network
// namespace, so no address outside loopback and the run's own namespaces is ever used.
import { rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';

type Endpoint = { path: string } | { host: string; port: number };

function parse(spec: string | undefined): Endpoint {
  const unix = /^unix:(.+)$/.exec(spec ?? '');
  if (unix?.[1]) return { path: unix[1] };
  const tcp = /^tcp:([^:]+):(\d+)$/.exec(spec ?? '');
  if (tcp?.[1] && tcp[2]) return { host: tcp[1], port: Number(tcp[2]) };
  console.error('usage: node relay.ts LISTEN TARGET   (tcp:HOST:PORT | unix:PATH)');
  process.exit(2);
}

const [listen, target] = [parse(process.argv[2]), parse(process.argv[3])];

function pipe(client: Socket): void {
  const upstream = connect(target);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
}

if ('path' in listen) rmSync(listen.path, { force: true });
const server = createServer(pipe);
server.listen(listen, () =>
  console.log(`relay ${process.argv[2]} -> ${process.argv[3]} (pid ${process.pid})`),
);
const stop = () => {
  server.close();
  if ('path' in listen) rmSync(listen.path, { force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
