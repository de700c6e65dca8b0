/**
 * The hop between replicas of one agent: the mesh balances a session's requests across every
 * replica behind the agent Service, while the session's tunnel lives on one. A replica that gets a
 * request of a session another replica holds sends it there, to the holder's pod address, plain
 * HTTP inside the pod network (through both sidecars under a mesh). Its Host names the replicas'
 * headless Service (manifests/agent/peers-service.yaml), whose mesh route sends it on to the pod
 * as addressed, with Istio mutual TLS: a STRICT PeerAuthentication admits it (a bare pod address
 * as Host would leave the sender's sidecar through its plain-text passthrough). The original authority and the sender travel in two headers, which the holder takes off again, and
 * which stop a request from being forwarded twice.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { H2cSessionPool } from '@detour/router/http/h2c-session-pool';
import { errorCode, errorMessage } from '@detour/router/http/http-errors';
import { http1Agent } from '@detour/router/http/http1-relay';
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

/** The request's headers for the hop: Host `host`, the forwarding headers added. */
function peerHeaders(pairs: HeaderPairs, authority: string, self: string, host: string): HeaderPairs {
  const headers = pairs.filter(
    ([name]) => name !== 'host' && name !== FORWARDED_BY_HEADER && name !== FORWARDED_HOST_HEADER,
  );
  headers.push(['host', host], [FORWARDED_BY_HEADER, self], [FORWARDED_HOST_HEADER, authority]);
  return headers;
}

export interface ArrivedFromPeer {
  /** The replica that sent it. */
  from: string;
  authority: string;
  /** The raw header list as the mesh delivered it: the authority restored, the forwarding headers off. */
  raw: string[];
}

/**
 * A request another replica forwarded here, read from its raw header list (`name, value, ...`):
 * who sent it and the header list without the hop (the original authority back under
 * `authorityName`). Undefined for a request that came straight from the mesh.
 */
export function arrivedFromPeer(
  raw: readonly string[],
  authorityName: 'host' | ':authority',
): ArrivedFromPeer | undefined {
  let from: string | undefined;
  let authority: string | undefined;
  const kept: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === FORWARDED_BY_HEADER) from = raw[i + 1];
    else if (name === FORWARDED_HOST_HEADER) authority = raw[i + 1];
    else kept.push(raw[i] as string, raw[i + 1] as string);
  }
  if (from === undefined || authority === undefined) return undefined;
  for (let i = 0; i < kept.length; i += 2)
    if ((kept[i] as string).toLowerCase() === authorityName) kept[i + 1] = authority;
  return { from, authority, raw: kept };
}

/**
 * The same for a node:http request, in place: its header list, `headers` and `headersDistinct`
 * become what the mesh delivered, so matching and the tunnel see the request as without the hop.
 */
export function http1FromPeer(req: IncomingMessage): ArrivedFromPeer | undefined {
  const arrived = arrivedFromPeer(req.rawHeaders, 'host');
  if (!arrived) return undefined;
  // Node builds both lazily from the raw list it counted first: build them before it changes.
  const { headers, headersDistinct } = req;
  req.rawHeaders = arrived.raw;
  headers.host = arrived.authority;
  headersDistinct.host = [arrived.authority];
  for (const name of [FORWARDED_BY_HEADER, FORWARDED_HOST_HEADER]) {
    delete headers[name];
    delete headersDistinct[name];
  }
  return arrived;
}

/** Sends requests to the replicas holding their sessions, on keep-alive connections (h2c for HTTP/2). */
export class PeerForwarder {
  /** This replica's pod name. */
  readonly self: string;
  readonly #agent = http1Agent(256);
  readonly #h2 = new H2cSessionPool();
  readonly #failed: () => void;
  readonly #host: string | undefined;

  /** `host`: the Host of every hop (the replicas' headless Service); undefined: the peer's address. */
  constructor(self: string, failed: () => void, host?: string) {
    this.self = self;
    this.#failed = failed;
    this.#host = host;
  }

  /** The request's headers for the hop to `peer` (see peerHeaders). */
  headers(pairs: HeaderPairs, authority: string, peer: PeerSession): HeaderPairs {
    return peerHeaders(pairs, authority, this.self, this.#host ?? peerAddress(peer));
  }

  target(peer: PeerSession): UpstreamTarget {
    return { host: peer.host, port: peer.port, agent: this.#agent, h2: this.#h2 };
  }

  /**
   * Relays one request (already matched to `peer`) and its answer, which names in
   * `x-detour-forwarded-by` the replica that forwarded it; abort it when the client leaves.
   */
  forward(
    peer: PeerSession,
    request: UpstreamRequest,
    body: Readable,
    writer: ResponseWriter,
  ): UpstreamExchange {
    const self = this.self;
    const marked: ResponseWriter = {
      get headSent() {
        return writer.headSent;
      },
      body: writer.body,
      writeHead: (status, headers) => writer.writeHead(status, [...headers, [FORWARDED_BY_HEADER, self]]),
      end: (trailers) => writer.end(trailers),
      fail: (status, text, code) => writer.fail(status, text, code),
    };
    return requestUpstream(
      this.target(peer),
      { ...request, headers: this.headers(request.headers, request.authority, peer) },
      body,
      marked,
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
    void this.#agent.destroy();
    this.#h2.close();
  }
}
