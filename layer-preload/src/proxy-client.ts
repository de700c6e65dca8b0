import net from 'node:net';
import { constants } from 'node:os';
import type { ResolvedAddress } from '@detour/router/egress/dialer';
import {
  Command,
  encodeAddress,
  errorCodeForReply,
  readAddress,
  readExactly,
  SOCKS_VERSION,
} from '@detour/router/egress/socks5';
import { DetourError } from '@detour/router/errors';
import type { LayerSettings } from './settings.ts';

export class DetourProxyDownError extends DetourError {}

type Connect = (this: net.Socket, options: net.NetConnectOpts) => net.Socket;

/**
 * The layer's side of the proxy protocol: one short SOCKS5 exchange per FORWARD or RESOLVE_ALL, on a
 * socket dialed with the unpatched connect. Failures come back as the errors the app would have
 * seen without detour (ENOTFOUND, ECONNREFUSED, ...), or DETOUR_PROXY_DOWN when the CLI is not there.
 */
export class ProxyClient {
  readonly #settings: LayerSettings;
  readonly #connect: Connect;

  constructor(settings: LayerSettings, unpatchedConnect: Connect) {
    this.#settings = settings;
    this.#connect = unpatchedConnect;
  }

  /** Has the proxy dial host:port; resolves to the one-shot loopback port that hands it over. */
  forward(host: string, port: number): Promise<{ host: string; port: number }> {
    return this.#exchange(Command.forward, host, port, async (_socket, bound) => bound);
  }

  /** Every address of `name` as the cluster resolves it (RESOLVE_ALL), of `family` if not 0. */
  async resolve(name: string, family: 0 | 4 | 6): Promise<ResolvedAddress[]> {
    const addresses = await this.#exchange(Command.resolveAll, name, family, async (socket, first) => {
      const all = [first.host];
      while (all.length < first.port) all.push((await readAddress(socket)).host);
      return all;
    });
    this.#settings.policy.noteRemoteAddresses(addresses);
    return addresses.map((address) => ({ address, family: net.isIPv6(address) ? 6 : 4 }));
  }

  async #exchange<T>(
    command: number,
    host: string,
    port: number,
    readAnswer: (socket: net.Socket, bound: { host: string; port: number }) => Promise<T>,
  ): Promise<T> {
    const { proxy, proxyTimeoutMs } = this.#settings;
    const socket = new net.Socket();
    this.#connect.call(socket, { host: proxy.host, port: proxy.port });
    socket.setNoDelay(true);
    socket.setTimeout(proxyTimeoutMs, () =>
      socket.destroy(proxyDown(`no answer within ${proxyTimeoutMs} ms`, host, port, proxy)),
    );
    // Greeting and request pipelined: the proxy reads them in order, one round trip in all.
    socket.write(
      Buffer.concat([
        Buffer.from([SOCKS_VERSION, 1, 0, SOCKS_VERSION, command, 0]),
        encodeAddress(host, port),
      ]),
    );
    let reply: number;
    let answer: T | undefined;
    try {
      await readExactly(socket, 2);
      reply = (await readExactly(socket, 3))[1] ?? 1;
      const bound = await readAddress(socket);
      if (reply === 0) answer = await readAnswer(socket, bound);
    } catch (err) {
      if (err instanceof DetourError) throw err;
      throw proxyDown(String((err as NodeJS.ErrnoException).code ?? err), host, port, proxy, err);
    } finally {
      socket.destroy();
    }
    if (reply !== 0 || answer === undefined) throw targetError(errorCodeForReply(reply), command, host, port);
    return answer;
  }
}

function proxyDown(
  why: string,
  host: string,
  port: number,
  proxy: { host: string; port: number },
  cause?: unknown,
): DetourProxyDownError {
  return new DetourProxyDownError(
    'DETOUR_PROXY_DOWN',
    `detour: cannot reach ${host}:${port} because detour's egress proxy at ${proxy.host}:${proxy.port} ` +
      `is not answering (${why}). Start the session with \`detour up\` (or run the app under \`detour exec\`), ` +
      'or run the app without detour (remove @detour/layer/register from NODE_OPTIONS).',
    { cause },
  );
}

/** The error node itself would raise for this failure, so that apps handle it as they always do. */
function targetError(code: string, command: number, host: string, port: number): Error {
  if (code === 'ENOTFOUND') {
    return Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), {
      errno: -3008,
      code,
      syscall: 'getaddrinfo',
      hostname: host,
    });
  }
  if (code.startsWith('DETOUR_')) {
    const what =
      code === 'DETOUR_TUNNEL_DOWN'
        ? "the tunnel to the cluster is down; check `detour status` and the agent's pod"
        : 'the egress proxy refused or failed the request; see the detour CLI log';
    const error = new DetourError(code, `detour: cannot reach ${host}:${port}: ${what}`);
    return error;
  }
  const errno = (constants.errno as Record<string, number>)[code];
  const syscall = command === Command.resolveAll ? 'getaddrinfo' : 'connect';
  return Object.assign(new Error(`${syscall} ${code} ${host}:${port}`), {
    ...(errno ? { errno: -errno } : {}),
    code,
    syscall,
    address: host,
    port,
  });
}
