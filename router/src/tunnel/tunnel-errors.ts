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
