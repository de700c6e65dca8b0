import net from 'node:net';
import type { EgressPolicy } from '@detour/router/egress/egress-policy';
import type { ProxyClient } from './proxy-client.ts';

type ConnectArgs = unknown[];
type ConnectOptions = Record<string, unknown> & { host?: string; port?: number | string; path?: string };
type Connect = (this: net.Socket, ...args: ConnectArgs) => net.Socket;

/**
 * Routes remote TCP connects through the proxy by patching `net.Socket.prototype.connect`, which every
 * TCP client of Node reaches (net.connect, http/https agents, tls.connect, http2, undici, the built-in
 * fetch, grpc-js). For a remote destination the socket stays "connecting" while the proxy dials the
 * destination from the cluster; then the same socket object connects to the one-shot loopback port
 * the proxy answered with. TLS therefore still runs inside the app's own TLSSocket, with SNI and the
 * certificate check against the real host name, and nothing else about the socket changes.
 */
export function patchNet(policy: EgressPolicy, client: ProxyClient, unpatched: Connect): void {
  net.Socket.prototype.connect = function detourConnect(this: net.Socket, ...args: ConnectArgs) {
    const [options, callback] = normalizeConnectArgs(args);
    if (options.path || options.port === undefined || options.port === null)
      return unpatched.apply(this, args);
    const host = typeof options.host === 'string' && options.host ? options.host : 'localhost';
    if (policy.decide(host) !== 'remote') return unpatched.apply(this, args);

    // Writes made meanwhile queue as they do during a DNS lookup.
    (this as { connecting: boolean }).connecting = true;
    client.forward(host, Number(options.port)).then(
      (bound) => {
        if (this.destroyed) return;
        const { localAddress: _a, localPort: _p, lookup: _l, family: _f, ...rest } = options;
        const rerouted = { ...rest, host: bound.host, port: bound.port };
        if (callback) unpatched.call(this, rerouted, callback);
        else unpatched.call(this, rerouted);
      },
      (err: Error) => {
        if (!this.destroyed) this.destroy(err);
      },
    );
    return this;
  } as typeof net.Socket.prototype.connect;
}

/** The same argument forms as node's own normalizeArgs: options, (port, host), path, or net.connect's array. */
function normalizeConnectArgs(args: ConnectArgs): [ConnectOptions, ((...a: unknown[]) => void) | null] {
  const first = args[0];
  if (Array.isArray(first)) return [(first[0] ?? {}) as ConnectOptions, (first[1] as never) ?? null];
  const last = args.at(-1);
  const callback = typeof last === 'function' ? (last as (...a: unknown[]) => void) : null;
  if (first !== null && typeof first === 'object') return [first as ConnectOptions, callback];
  if (typeof first === 'string' && !/^\d+$/.test(first.trim())) return [{ path: first }, callback];
  const host = typeof args[1] === 'string' ? args[1] : undefined;
  return [{ port: first as number, ...(host ? { host } : {}) }, callback];
}
