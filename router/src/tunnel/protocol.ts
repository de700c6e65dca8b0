/**
 * The detour tunnel wire protocol, imported by both ends (agent and CLI) so they cannot drift.
 *
 * One TCP connection (through `kubectl port-forward` in a cluster) carries many streams, each a
 * flow-controlled byte stream with JSON header blocks, in both directions:
 *   frame = length:u32 | type:u8 | flags:u8 | stream:u32 | payload[length]
 * Stream 0 carries the handshake, control requests, pings and goaway. The CLI (client) opens odd
 * stream ids, the agent (server) even ones, so both sides open streams without coordination.
 */
import * as z from '../zod.ts';

export const PROTOCOL_NAME = 'detour-tunnel';
/** Bumped on any incompatible change; both ends refuse a peer with another version. */
export const PROTOCOL_VERSION = 1;

export const FRAME_HEADER_BYTES = 10;
/** Largest payload accepted; anything larger is a protocol error (guards memory on bad input). */
export const MAX_FRAME_PAYLOAD = 1 << 20;
/** DATA frames are cut at this size so one big write cannot monopolise the connection. */
export const MAX_DATA_CHUNK = 64 * 1024;
/** Bytes a sender may have in flight on one stream before the receiver grants more. */
export const INITIAL_STREAM_WINDOW = 1024 * 1024;

export const FrameType = {
  hello: 1,
  helloAck: 2,
  open: 3,
  headers: 4,
  data: 5,
  window: 6,
  reset: 7,
  ping: 8,
  goaway: 9,
  control: 10,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export const FrameFlag = {
  /** The sender will send nothing more on this stream. */
  endStream: 0x1,
  /** A ping that answers another ping. */
  ack: 0x2,
} as const;

export interface Frame {
  type: FrameTypeCode;
  flags: number;
  stream: number;
  payload: Buffer;
}

/**
 * The hello and its answer keep this shape in every version (only fields are added), so two ends of
 * different versions can always tell each other which they speak.
 */
export const Hello = z.object({
  protocol: z.literal(PROTOCOL_NAME),
  version: z.int(),
  token: z.string(),
  client: z.string().check(z.maxLength(256)),
  /** The CLI's detour release, for messages about a version mismatch. */
  release: z.optional(z.string().check(z.maxLength(64))),
});
export type Hello = z.infer<typeof Hello>;

export const HelloAck = z.object({
  protocol: z.literal(PROTOCOL_NAME),
  version: z.int(),
  agent: z.string().check(z.maxLength(256)),
  /** The agent's detour release. */
  release: z.optional(z.string().check(z.maxLength(64))),
});
export type HelloAck = z.infer<typeof HelloAck>;

/** Header list as ordered name/value pairs: keeps repeated headers (set-cookie) and their order. */
export const HeaderPairs = z.array(z.tuple([z.string(), z.string()]));
export type HeaderPairs = z.infer<typeof HeaderPairs>;

/** An HTTP request the agent received for a session, handed to the CLI. */
export const HttpStreamOpen = z.object({
  kind: z.literal('http'),
  session: z.string(),
  mode: z.enum(['steal', 'mirror']),
  targetPort: z.int().check(z.gte(1), z.lte(65535)),
  httpVersion: z.enum(['1.1', '2']),
  method: z.string(),
  path: z.string(),
  authority: z.string(),
  headers: HeaderPairs,
  /** Where the request came from, as the agent saw it (the caller's sidecar, in a mesh). */
  remoteAddress: z.optional(z.string()),
  upgrade: z.boolean(),
});
export type HttpStreamOpen = z.infer<typeof HttpStreamOpen>;

/** The CLI asks the agent to dial host:port from inside the cluster. */
export const ConnectStreamOpen = z.object({
  kind: z.literal('connect'),
  host: z.string().check(z.minLength(1), z.maxLength(253)),
  port: z.int().check(z.gte(1), z.lte(65535)),
});
export type ConnectStreamOpen = z.infer<typeof ConnectStreamOpen>;

/** The CLI asks the agent to resolve a name with the pod's resolver. */
export const DnsStreamOpen = z.object({
  kind: z.literal('dns'),
  name: z.string().check(z.minLength(1), z.maxLength(253)),
  family: z.union([z.literal(0), z.literal(4), z.literal(6)]),
});
export type DnsStreamOpen = z.infer<typeof DnsStreamOpen>;

export const StreamOpen = z.discriminatedUnion('kind', [HttpStreamOpen, ConnectStreamOpen, DnsStreamOpen]);
export type StreamOpen = z.infer<typeof StreamOpen>;

/** Header blocks that follow an open, in either direction. */
export const HttpResponseHead = z.object({ status: z.int(), headers: HeaderPairs });
export type HttpResponseHead = z.infer<typeof HttpResponseHead>;
export const HttpTrailers = z.object({ trailers: HeaderPairs });
export type HttpTrailers = z.infer<typeof HttpTrailers>;
export const ConnectEstablished = z.object({ connected: z.literal(true), remoteAddress: z.string() });
export const DnsAnswer = z.object({
  addresses: z.array(z.object({ address: z.string(), family: z.union([z.literal(4), z.literal(6)]) })),
});

export const ResetPayload = z.object({ code: z.string(), message: z.string() });
export type ResetPayload = z.infer<typeof ResetPayload>;
/**
 * Why a connection ends. A refusal of another protocol version (code DETOUR_TUNNEL_VERSION) also
 * carries the refusing end's version and release, so the refused end can name both in its own words.
 */
export const GoAway = z.extend(ResetPayload, {
  version: z.optional(z.int()),
  release: z.optional(z.string().check(z.maxLength(64))),
});
export type GoAway = z.infer<typeof GoAway>;

/** Control messages on stream 0: request/response pairs and one-way events. */
export const ControlMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('request'), id: z.int(), method: z.string(), params: z.unknown() }),
  z.object({ type: z.literal('response'), id: z.int(), result: z.unknown() }),
  z.object({ type: z.literal('error'), id: z.int(), code: z.string(), message: z.string() }),
  z.object({ type: z.literal('event'), name: z.string(), data: z.unknown() }),
]);
export type ControlMessage = z.infer<typeof ControlMessage>;

/**
 * Control request `route.probe`: the agent sends a request with `headers` to `url` from inside the
 * mesh and says whether it came back to itself (the session's route is in effect). `copyWaitMs`:
 * a copy arriving within that long after someone else answered counts too (mirror routes).
 * `responseHeader`: the answer's value of that header comes back as `header` (feature
 * environments: their routes name the pod that answered).
 */
export const RouteProbeParams = z.object({
  url: z.url(),
  headers: z.record(z.string(), z.string()),
  copyWaitMs: z.optional(z.int().check(z.gte(0), z.lte(5_000))),
  responseHeader: z.optional(z.string().check(z.minLength(1), z.maxLength(100))),
  /** The method a filter on :method needs; HEAD when none does. */
  method: z._default(z.string().check(z.regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/)), 'HEAD'),
});
export type RouteProbeParams = z.input<typeof RouteProbeParams>;
export const RouteProbeResult = z.object({
  live: z.boolean(),
  detail: z.string(),
  header: z.optional(z.string()),
});
export type RouteProbeResult = z.infer<typeof RouteProbeResult>;
/** Marks a probe: the agent that sent it answers it itself; it never reaches a developer. */
export const PROBE_HEADER = 'x-detour-probe';

/** Reset and goaway codes. Errno-like codes (ECONNREFUSED, ENOTFOUND, ...) pass through as they are. */
export const TunnelCode = {
  cancel: 'DETOUR_STREAM_CANCELLED',
  protocol: 'DETOUR_TUNNEL_PROTOCOL',
  version: 'DETOUR_TUNNEL_VERSION',
  auth: 'DETOUR_TUNNEL_AUTH',
  timeout: 'DETOUR_TUNNEL_TIMEOUT',
  closed: 'DETOUR_TUNNEL_CLOSED',
  refused: 'DETOUR_STREAM_REFUSED',
  upstream: 'DETOUR_LOCAL_APP_UNREACHABLE',
} as const;
