import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  AUTH_NONE,
  AUTH_UNACCEPTABLE,
  Command,
  encodeAddress,
  Reply,
  readAddress,
  readExactly,
  replyForErrorCode,
  SOCKS_VERSION,
} from '@detour/router/egress/socks5';
import type { ProxyContext } from './proxy-context.ts';
import { relay } from './relay.ts';

/** Serves one SOCKS5 client connection (RFC 1928, no authentication). */
export async function serveSocks5(socket: net.Socket, ctx: ProxyContext): Promise<void> {
  const [, methodCount = 0] = await readExactly(socket, 2);
  const methods = await readExactly(socket, methodCount);
  if (!methods.includes(AUTH_NONE)) {
    socket.end(Buffer.from([SOCKS_VERSION, AUTH_UNACCEPTABLE]));
    return;
  }
  socket.write(Buffer.from([SOCKS_VERSION, AUTH_NONE]));
  const [version, command] = await readExactly(socket, 3);
  const { host, port } = await readAddress(socket);
  if (version !== SOCKS_VERSION) return void socket.destroy();
  const reply = (code: number, bound = '0.0.0.0', boundPort = 0) =>
    Buffer.concat([Buffer.from([SOCKS_VERSION, code, 0]), encodeAddress(bound, boundPort)]);

  switch (command) {
    case Command.connect: {
      ctx.stats.socksConnect++;
      let upstream: Duplex;
      try {
        upstream = await ctx.dial(host, port);
      } catch (err) {
        socket.end(reply(replyForErrorCode(codeOf(err), true)));
        return;
      }
      socket.write(reply(Reply.succeeded));
      await relay(socket, upstream);
      return;
    }
    case Command.resolve:
    case Command.resolveAll: {
      // Tor's extension: DST.PORT is unused there; detour's layer puts the address family (0/4/6) in it.
      ctx.stats.socksResolve++;
      const family = port === 4 || port === 6 ? port : 0;
      try {
        const [first, ...rest] = await ctx.router.lookup(host, family);
        if (!first) socket.end(reply(Reply.hostUnreachable));
        else if (command === Command.resolve) socket.end(reply(Reply.succeeded, first.address, 0));
        else {
          const others = rest.map((found) => encodeAddress(found.address, 0));
          socket.end(Buffer.concat([reply(Reply.succeeded, first.address, rest.length + 1), ...others]));
        }
      } catch (err) {
        socket.end(reply(replyForErrorCode(codeOf(err), false)));
      }
      return;
    }
    case Command.forward: {
      ctx.stats.layerForward++;
      await serveForward(socket, host, port, ctx, reply);
      return;
    }
    default:
      socket.end(reply(Reply.commandNotSupported));
  }
}

/**
 * detour's FORWARD: dial the target first (so the layer sees the real errno before its socket
 * "connects"), then hand the connection over on a one-shot loopback port that accepts exactly one
 * connection. The layer connects the app's own socket object there, which keeps TLS, agents and
 * every socket option of the app untouched.
 */
async function serveForward(
  control: net.Socket,
  host: string,
  port: number,
  ctx: ProxyContext,
  reply: (code: number, bound?: string, boundPort?: number) => Buffer,
): Promise<void> {
  let upstream: Duplex;
  try {
    upstream = await ctx.dial(host, port);
  } catch (err) {
    control.end(reply(replyForErrorCode(codeOf(err), false)));
    return;
  }
  // Until the layer claims the port nothing reads the stream: an upstream that fails meanwhile (the
  // tunnel closing as the session ends) must not crash the CLI; the relay then finds it destroyed.
  upstream.on('error', () => upstream.destroy());
  const oneShot = net.createServer({ allowHalfOpen: true, noDelay: true });
  const accepted = new Promise<net.Socket | undefined>((resolve) => {
    // Unreferenced: an unclaimed port never keeps the CLI alive; it gives up after the timeout.
    const timer = setTimeout(() => resolve(undefined), ctx.forwardTimeoutMs).unref();
    oneShot.once('connection', (socket) => {
      clearTimeout(timer);
      resolve(socket);
    });
  });
  oneShot.unref();
  await new Promise<void>((resolve) => oneShot.listen(0, '127.0.0.1', resolve));
  const { port: boundPort } = oneShot.address() as net.AddressInfo;
  control.end(reply(Reply.succeeded, '127.0.0.1', boundPort));
  const socket = await accepted;
  oneShot.close();
  if (!socket) return void upstream.destroy();
  await relay(ctx.track(socket), upstream);
}

function codeOf(err: unknown): string | undefined {
  return (err as { code?: string } | undefined)?.code;
}
