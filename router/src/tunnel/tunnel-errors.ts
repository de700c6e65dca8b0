import { DetourError } from '../errors.ts';
import { TunnelCode } from './protocol.ts';

/** The peer broke the wire protocol; the connection is closed. */
export class TunnelProtocolError extends DetourError {
  constructor(detail: string) {
    super(TunnelCode.protocol, `tunnel protocol error: ${detail}`);
  }
}

/** A stream was reset by the peer or locally; `code` says why (errno-like codes pass through). */
export class TunnelStreamError extends DetourError {}

/** The whole connection ended: auth, version, heartbeat timeout or the peer going away. */
export class TunnelClosedError extends DetourError {}

/** The tunnel protocol version an end speaks, and its detour release when it said. */
export interface TunnelEndVersion {
  version: number;
  release?: string | undefined;
}

/** The peer speaks another protocol version: the connection is refused, both versions known. */
export class TunnelVersionError extends TunnelClosedError {
  readonly local: TunnelEndVersion;
  readonly peer: TunnelEndVersion;

  constructor(message: string, local: TunnelEndVersion, peer: TunnelEndVersion) {
    super(TunnelCode.version, message);
    this.local = local;
    this.peer = peer;
  }
}
