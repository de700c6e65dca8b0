import net from 'node:net';
import tls from 'node:tls';

/** The most one read takes. */
const readBufferBytes = 64 * 1024;

/**
 * A TLS connection that reads into one reused buffer (`onread`) and pushes a copy of each read at
 * its size, so pause, unshift and backpressure behave as on any socket. Through Node's own TLS read
 * path, the kube-apiserver's stream of small port-forward messages made V8 run a full mark-compact
 * every ~250 requests (11–15 per 3,000 requests under `--trace-gc`, pauses of 4–14 ms) and cost the
 * CLI ~30 % more CPU per request; with this, 0–1 (measured on the local cluster, tests/bench/README.md).
 */
export function connectRightSizedTls(options: tls.ConnectionOptions & { host?: string }): tls.TLSSocket {
  const servername = options.servername ?? (net.isIP(options.host ?? '') ? '' : options.host);
  const socket: tls.TLSSocket = tls.connect({
    ...options,
    // ws passes the request's URL path along; to tls.connect a path means a Unix socket.
    path: undefined,
    ...(servername !== undefined ? { servername } : {}),
    onread: {
      buffer: Buffer.allocUnsafe(readBufferBytes),
      // false pauses the socket until the reader drains it, as a full buffer would.
      callback: (bytes: number, buffer: Uint8Array) => socket.push(Buffer.from(buffer.subarray(0, bytes))),
    },
  } as tls.ConnectionOptions);
  return socket;
}
