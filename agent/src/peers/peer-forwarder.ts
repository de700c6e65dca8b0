/**
 * The hop between replicas of one agent: the mesh balances a session's requests across every
 * replica behind the agent Service, while the session's tunnel lives on one. A replica that gets a
 * request of a session another replica holds sends it there, to the holder's pod address, plain
 * HTTP inside the pod network (through both sidecars under a mesh). Its Host names that address
 * (no mesh route matches it, so the sender's sidecar passes it on to the pod as addressed); the
 * original authority and the sender travel in two headers, which the holder takes off again, and
 * which stop a request from being forwarded twice.
 */
import http from 'node:http';
import type { Readable } from 'node:stream';
import { H2cSessionPool } from '@detour/router/http/h2c-session-pool';
import { errorCode, errorMessage } from '@detour/router/http/http-errors';
import type { ResponseWriter } from '@detour/router/http/response-writer';
import {
  requestUpstream,
  type UpstreamExchange,
  type UpstreamRequest,
  type UpstreamTarget,
} from '@detour/router/http/upstream-request';
import type { HeaderPairs } from '@detour/router/tunnel/protocol';
import type { PeerSession } from './session-directory.ts';

/** The replica that forwarded the request (its pod name): the loop guard. */
export const FORWARDED_BY_HEADER = 'x-detour-forwarded-by';
/** The authority the request was sent to before the hop (what sessions match on). */
export const FORWARDED_HOST_HEADER = 'x-detour-forwarded-host';

export function peerAddress(peer: PeerSession): string {
  return peer.host.includes(':') ? `[${peer.host}]:${peer.port}` : `${peer.host}:${peer.port}`;
}

/** The request's headers for the hop to `peer`: Host names the peer, the forwarding headers added. */
export function peerHeaders(
  pairs: HeaderPairs,
  authority: string,
  self: string,
  peer: PeerSession,
): HeaderPairs {
  const headers = pairs.filter(
    ([name]) => name !== 'host' && name !== FORWARDED_BY_HEADER && name !== FORWARDED_HOST_HEADER,
  );
  headers.push(['host', peerAddress(peer)], [FORWARDED_BY_HEADER, self], [FORWARDED_HOST_HEADER, authority]);
  return headers;
}

export interface ArrivedFromPeer {
  /** The replica that sent it. */
  from: string;
  authority: string;
}

/**
 * A request another replica forwarded here: its original authority is put back in `raw` (and in
 * `headers`, when given) under `authorityName`, and the forwarding headers are taken off, in place,
 * so matching and the developer's app see the request as the mesh delivered it. Undefined for a
 * request that came straight from the mesh.
 */
export function arrivedFromPeer(
  raw: string[],
  authorityName: 'host' | ':authority',
  headers?: Record<string, unknown>,
): ArrivedFromPeer | undefined {
  let from: string | undefined;
  let authority: string | undefined;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name !== FORWARDED_BY_HEADER && name !== FORWARDED_HOST_HEADER) continue;
    if (name === FORWARDED_BY_HEADER) from = raw[i + 1];
    else authority = raw[i + 1];
    raw.splice(i, 2);
  }
  if (from === undefined || authority === undefined) return undefined;
  for (let i = 0; i < raw.length; i += 2)
    if ((raw[i] as string).toLowerCase() === authorityName) raw[i + 1] = authority;
  if (headers) {
    headers[authorityName] = authority;
    delete headers[FORWARDED_BY_HEADER];
    delete headers[FORWARDED_HOST_HEADER];
  }
  return { from, authority };
}

/** Sends requests to the replicas holding their sessions, on keep-alive connections (h2c for HTTP/2). */
export class PeerForwarder {
  /** This replica's pod name. */
  readonly self: string;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  readonly #h2 = new H2cSessionPool();
  readonly #failed: () => void;

  constructor(self: string, failed: () => void) {
    this.self = self;
    this.#failed = failed;
  }

  target(peer: PeerSession): UpstreamTarget {
    return { host: peer.host, port: peer.port, agent: this.#agent, h2: this.#h2 };
  }

  /** Relays one request (already matched to `peer`) and its answer; abort it when the client leaves. */
  forward(
    peer: PeerSession,
    request: UpstreamRequest,
    body: Readable,
    writer: ResponseWriter,
  ): UpstreamExchange {
    return requestUpstream(
      this.target(peer),
      { ...request, headers: peerHeaders(request.headers, request.authority, this.self, peer) },
      body,
      writer,
      (error, headSent) => {
        return {
          status: headSent ? 500 : 502,
          text: this.failure(peer, error),
          code: errorCode(error, 'DETOUR_PEER_FAILED'),
        };
      },
    );
  }

  /** Counts a failed hop and says what failed, for the client. */
  failure(peer: PeerSession, error: Error): string {
    this.#failed();
    return `detour: session ${peer.id} is held by the agent replica ${peer.pod} (${peerAddress(peer)}), which failed (${errorCode(error, 'DETOUR_PEER_FAILED')}): ${errorMessage(error)}; if that replica just went away, the session's CLI reconnects to another within seconds`;
  }

  close(): void {
    this.#agent.destroy();
    this.#h2.close();
  }
}
