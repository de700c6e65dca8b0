import { DetourError } from '../errors.ts';
import { TunnelCode } from '../tunnel/protocol.ts';

/** The CLI could not reach the developer's local app; the agent turns this reset into a 502. */
export class LocalAppUnreachableError extends DetourError {
  readonly port: number;
  constructor(
    host: string,
    port: number,
    targetPort: number,
    cause: { code?: string; message?: string; name?: string },
  ) {
    const why = cause.code ?? cause.message ?? 'unknown error';
    const mapping =
      port === targetPort
        ? `start your app on port ${port}, or map the session's port ${targetPort} to the port your app listens on with --port ${targetPort}:<local port>`
        : `start your app on port ${port} (the session maps port ${targetPort} to it with --port), or change the mapping`;
    // Refused: nothing listens. A parse error or a hang-up: something listens but does not speak
    // what the CLI sent (a gRPC-only server, TLS); the fix is different, so the message is too.
    let what = `nothing answered on ${host}:${port} (${why}): ${mapping}`;
    // node:http's parser errors carry an HPE_ code; undici's (HTTPParserError) often none.
    if (cause.code?.startsWith('HPE_') || cause.name === 'HTTPParserError') {
      what = `the app on ${host}:${port} answered something that is not HTTP/1.1 (${why}): it may speak only HTTP/2 (a gRPC server: its callers must use HTTP/2) or TLS; detour delivers plain HTTP/1.1, or h2c to requests that arrived over HTTP/2`;
    } else if (cause.code === 'ECONNRESET' || cause.code === 'UND_ERR_SOCKET') {
      what = `the app on ${host}:${port} closed the connection without answering (${why}): check that it speaks plain HTTP (no TLS), or ${mapping}`;
    }
    super(TunnelCode.upstream, what, { cause });
    this.port = port;
  }
}

/** The error code of anything thrown (errno-like codes pass through), for resets and 502 bodies. */
export function errorCode(error: unknown, fallback: string = TunnelCode.cancel): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 ? code : fallback;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
