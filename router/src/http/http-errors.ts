import { DetourError } from '../errors.ts';
import { TunnelCode } from '../tunnel/protocol.ts';

/** The CLI could not reach the developer's local app; the agent turns this reset into a 502. */
export class LocalAppUnreachableError extends DetourError {
  readonly port: number;
  constructor(host: string, port: number, targetPort: number, cause: { code?: string; message?: string }) {
    const why = cause.code ?? cause.message ?? 'unknown error';
    const mapping =
      port === targetPort
        ? `start your app on port ${port}, or map the session's port ${targetPort} to the port your app listens on with --port ${targetPort}:<local port>`
        : `start your app on port ${port} (the session maps port ${targetPort} to it with --port), or change the mapping`;
    super(TunnelCode.upstream, `nothing answered on ${host}:${port} (${why}): ${mapping}`, { cause });
    this.port = port;
  }
}

/** The exchange with the peer of a stream ended badly; `code` is the reset code or errno. */
export class HttpRelayError extends DetourError {}

/** The error code of anything thrown (errno-like codes pass through), for resets and 502 bodies. */
export function errorCode(error: unknown, fallback: string = TunnelCode.cancel): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 ? code : fallback;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
