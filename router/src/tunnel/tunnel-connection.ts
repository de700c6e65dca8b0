import { timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import * as z from '../zod.ts';
import { encodeFrameHeader, FrameDecoder } from './frame-codec.ts';
import {
  ControlMessage,
  type Frame,
  FrameFlag,
  FrameType,
  type FrameTypeCode,
  GoAway,
  Hello,
  HelloAck,
  PROTOCOL_NAME,
  PROTOCOL_VERSION,
  ResetPayload,
  StreamOpen,
  TunnelCode,
} from './protocol.ts';
import {
  TunnelClosedError,
  type TunnelEndVersion,
  TunnelProtocolError,
  TunnelStreamError,
  TunnelVersionError,
} from './tunnel-errors.ts';
import { type FrameSink, TunnelStream } from './tunnel-stream.ts';

export type TunnelRole = 'client' | 'server';

/** What a tunnel runs over: a TCP socket (set to TCP_NODELAY here), or another byte stream (the CLI's port-forward). */
export type TunnelTransport = Duplex & { setNoDelay?: (noDelay?: boolean) => unknown };

export interface TunnelConnectionOptions {
  /** Interval between pings; the connection is declared dead after three silent intervals. */
  heartbeatMs?: number;
  /** This end's detour release: told to the peer in the hello (or its answer) and in a version refusal. */
  release?: string;
  /** What the user does about a peer of another protocol version: ends the refusal's message here. */
  versionFix?: (peer: TunnelEndVersion) => string;
}

export type ControlHandler = (method: string, params: unknown) => Promise<unknown> | unknown;

export interface TunnelConnectionEvents {
  stream: [TunnelStream];
  event: [string, unknown];
  close: [TunnelClosedError | undefined];
}

const handshakeTimeoutMs = 10_000;
/** A header block is any JSON value; its reader checks its shape. */
const HeaderBlockValue = z.unknown();

function parseJson<T>(schema: z.ZodMiniType<T>, payload: Buffer, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new TunnelProtocolError(`${what} is not valid JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new TunnelProtocolError(`${what} is malformed: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/**
 * One end of a tunnel: frames in and out of a socket, the stream table, control requests,
 * heartbeats. Create it with `TunnelConnection.connect` (CLI side) or `TunnelConnection.accept`
 * (agent side); both resolve only after a successful handshake.
 */
export class TunnelConnection extends EventEmitter<TunnelConnectionEvents> implements FrameSink {
  readonly role: TunnelRole;
  /** Who the peer says it is (client name for the agent, agent name for the CLI). */
  peerName = '';
  /** The peer's detour release, when it told it in the handshake. */
  peerRelease: string | undefined;
  bytesIn = 0;
  bytesOut = 0;
  private readonly socket: TunnelTransport;
  private readonly decoder = new FrameDecoder();
  private readonly streams = new Map<number, TunnelStream>();
  private nextStreamId: number;
  private highestPeerStreamId = 0;
  private readonly drainWaiters: Array<() => void> = [];
  private controlHandler: ControlHandler | undefined;
  private nextRequestId = 1;
  private readonly pendingRequests = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private handshake: ((frame: Frame) => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();
  private closedWith: TunnelClosedError | undefined;
  private closed = false;
  private readonly options: TunnelConnectionOptions;

  private constructor(socket: TunnelTransport, role: TunnelRole, options: TunnelConnectionOptions) {
    super();
    this.socket = socket;
    this.role = role;
    this.options = options;
    this.nextStreamId = role === 'client' ? 1 : 2;
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('drain', () => this.flushDrainWaiters());
    socket.on('error', (error) =>
      this.terminate(new TunnelClosedError(TunnelCode.closed, `tunnel socket failed: ${error.message}`)),
    );
    socket.on('close', () =>
      this.terminate(
        this.closedWith ?? new TunnelClosedError(TunnelCode.closed, 'the tunnel connection closed'),
      ),
    );
  }

  /** CLI side: says hello with the token and waits for the agent's acknowledgement. */
  static connect(
    socket: TunnelTransport,
    hello: { token: string; client: string },
    options: TunnelConnectionOptions = {},
  ): Promise<TunnelConnection> {
    const connection = new TunnelConnection(socket, 'client', options);
    return connection.runHandshake(
      () => {
        const { release } = options;
        connection.send(
          FrameType.hello,
          0,
          0,
          json({
            protocol: PROTOCOL_NAME,
            version: PROTOCOL_VERSION,
            ...hello,
            ...(release ? { release } : {}),
          } satisfies Hello),
        );
      },
      (frame) => {
        if (frame.type !== FrameType.helloAck)
          throw new TunnelProtocolError(`expected the agent's hello, got frame type ${frame.type}`);
        const ack = parseJson(HelloAck, frame.payload, 'hello acknowledgement');
        if (ack.version !== PROTOCOL_VERSION)
          throw connection.versionRefusal({ version: ack.version, release: ack.release });
        connection.peerName = ack.agent;
        connection.peerRelease = ack.release;
      },
    );
  }

  /** Agent side: waits for the client's hello and accepts it only with a valid token and version. */
  static accept(
    socket: TunnelTransport,
    options: TunnelConnectionOptions & {
      agent: string;
      /** Tokens accepted as they are (compared in constant time). */
      tokens?: readonly string[];
      /** Other tokens: asked when no static one matches (the agent checks session Leases). */
      authenticate?: (token: string) => boolean | Promise<boolean>;
    },
  ): Promise<TunnelConnection> {
    const connection = new TunnelConnection(socket, 'server', options);
    return connection.runHandshake(
      () => {},
      async (frame) => {
        if (frame.type !== FrameType.hello)
          throw new TunnelProtocolError(`expected a hello, got frame type ${frame.type}`);
        const hello = parseJson(Hello, frame.payload, 'hello');
        connection.peerName = hello.client;
        connection.peerRelease = hello.release;
        if (hello.version !== PROTOCOL_VERSION)
          throw connection.versionRefusal({ version: hello.version, release: hello.release });
        const accepted =
          (options.tokens ?? []).some((token) => tokensEqual(token, hello.token)) ||
          ((await options.authenticate?.(hello.token)) ?? false);
        if (!accepted) {
          throw new TunnelClosedError(
            TunnelCode.auth,
            'the session token was not accepted: start the session again with `detour` so it fetches a fresh token',
          );
        }
        connection.send(
          FrameType.helloAck,
          0,
          0,
          json({
            protocol: PROTOCOL_NAME,
            version: PROTOCOL_VERSION,
            agent: options.agent,
            ...(options.release ? { release: options.release } : {}),
          } satisfies HelloAck),
        );
      },
    );
  }

  /** The error that refuses a peer of another protocol version: both versions, and the fix. */
  private versionRefusal(peer: TunnelEndVersion): TunnelVersionError {
    const local = { version: PROTOCOL_VERSION, release: this.options.release };
    const named = (end: TunnelEndVersion) =>
      `v${end.version}${end.release ? ` (detour ${end.release})` : ''}`;
    const [us, them] = this.role === 'client' ? ['this CLI', 'the agent'] : ['this agent', 'the CLI'];
    const fix = this.options.versionFix?.(peer) ?? 'use a detour CLI and agent of the same release';
    return new TunnelVersionError(
      `${them} speaks tunnel protocol ${named(peer)} but ${us} speaks ${named(local)}: ${fix}`,
      local,
      peer,
    );
  }

  private runHandshake(
    start: () => void,
    onFrame: (frame: Frame) => void | Promise<void>,
  ): Promise<TunnelConnection> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.close(TunnelCode.timeout, 'no handshake within 10 s'),
        handshakeTimeoutMs,
      );
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.handshake = undefined;
        this.off('close', onClose);
        if (error) reject(error);
        else {
          this.startHeartbeat(this.options.heartbeatMs ?? 5_000);
          resolve(this);
        }
      };
      const onClose = (error: TunnelClosedError | undefined) =>
        done(error ?? new TunnelClosedError(TunnelCode.closed, 'the tunnel closed during the handshake'));
      this.on('close', onClose);
      this.handshake = (frame) => {
        // The peer waits for the answer to its first frame: anything else before it is a violation.
        this.handshake = () => {
          throw new TunnelProtocolError('a frame arrived before the handshake was answered');
        };
        Promise.resolve()
          .then(() => onFrame(frame))
          .then(
            () => done(),
            (error: TunnelClosedError) =>
              this.closeWith(
                error instanceof TunnelVersionError
                  ? error
                  : new TunnelClosedError(error.code ?? TunnelCode.protocol, error.message),
              ),
          );
      };
      start();
    });
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** Why the tunnel closed, once it has. */
  get closeReason(): TunnelClosedError | undefined {
    return this.closed ? this.closedWith : undefined;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Opens a stream to the peer; its metadata tells the peer what to do with it. */
  openStream(open: StreamOpen): TunnelStream {
    if (this.closed)
      throw this.closedWith ?? new TunnelClosedError(TunnelCode.closed, 'the tunnel is closed');
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new TunnelStream(this, id, open);
    this.streams.set(id, stream);
    this.send(FrameType.open, 0, id, json(open));
    return stream;
  }

  /** Answers the peer's control requests. */
  onControl(handler: ControlHandler): void {
    this.controlHandler = handler;
  }

  /** Sends a control request and resolves with the peer's result. */
  request(method: string, params: unknown): Promise<unknown> {
    if (this.closed) return Promise.reject(this.closedWith);
    const id = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      this.pendingRequests.set(id, { resolve, reject });
      this.send(FrameType.control, 0, 0, json({ type: 'request', id, method, params }));
    });
  }

  /** Sends a one-way event to the peer. */
  notify(name: string, data: unknown): void {
    if (!this.closed) this.send(FrameType.control, 0, 0, json({ type: 'event', name, data }));
  }

  /** Sends goaway with a reason and closes; every open stream fails with that reason. */
  close(code: string = TunnelCode.closed, message = 'the tunnel was closed'): void {
    this.closeWith(new TunnelClosedError(code, message));
  }

  private closeWith(reason: TunnelClosedError): void {
    if (this.closed) return;
    this.closedWith = reason;
    const { code, message } = reason;
    const versions = reason instanceof TunnelVersionError ? reason.local : {};
    this.send(FrameType.goaway, 0, 0, json({ code, message, ...versions } satisfies GoAway));
    this.socket.end();
    // A peer that never reads must not keep the socket open forever.
    setTimeout(() => this.socket.destroy(), 2_000).unref();
    this.terminate(this.closedWith);
  }

  send(type: FrameTypeCode, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): boolean {
    if (this.socket.destroyed || (this.closed && type !== FrameType.goaway)) return true;
    const header = encodeFrameHeader(type, flags, stream, payload.length);
    this.bytesOut += header.length + payload.length;
    // Frames written in one turn of the event loop leave in one writev: a request is several small
    // frames (open, headers, data, end), and the answers to a burst of requests are read from many
    // sockets in one poll phase; a syscall each would dominate the cost of a small request.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    this.socket.write(header);
    return payload.length === 0 ? !this.socket.writableNeedDrain : this.socket.write(payload);
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  whenWritable(callback: () => void): void {
    if (!this.socket.writableNeedDrain || this.closed) callback();
    else this.drainWaiters.push(callback);
  }

  released(stream: TunnelStream): void {
    this.streams.delete(stream.id);
  }

  violated(error: TunnelProtocolError): void {
    this.close(error.code, error.message);
  }

  private flushDrainWaiters(): void {
    for (const waiter of this.drainWaiters.splice(0)) waiter();
  }

  private startHeartbeat(intervalMs: number): void {
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > intervalMs * 3) {
        this.close(
          TunnelCode.timeout,
          `no word from the peer for ${Math.round((Date.now() - this.lastHeard) / 1000)} s`,
        );
        return;
      }
      this.send(FrameType.ping, 0, 0, Buffer.alloc(8));
    }, intervalMs);
    this.heartbeat.unref();
  }

  private onBytes(chunk: Buffer): void {
    if (this.closed) return;
    this.bytesIn += chunk.length;
    this.lastHeard = Date.now();
    try {
      for (const frame of this.decoder.push(chunk)) {
        if (this.closed) return;
        if (this.handshake && frame.type !== FrameType.goaway) this.handshake(frame);
        else this.dispatch(frame);
      }
    } catch (error) {
      const failure = error instanceof TunnelProtocolError ? error : new TunnelProtocolError(String(error));
      this.close(failure.code, failure.message);
    }
  }

  private dispatch(frame: Frame): void {
    if (frame.stream === 0) {
      this.dispatchConnectionFrame(frame);
      return;
    }
    if (frame.type === FrameType.open) {
      this.acceptStream(frame);
      return;
    }
    const stream = this.streams.get(frame.stream);
    if (!stream) {
      if (!this.isKnownStreamId(frame.stream))
        throw new TunnelProtocolError(
          `frame type ${frame.type} for stream ${frame.stream}, which was never opened`,
        );
      return; // a late frame for a stream already finished here: harmless
    }
    const end = (frame.flags & FrameFlag.endStream) !== 0;
    switch (frame.type) {
      case FrameType.data:
        stream.receiveData(frame.payload, end);
        break;
      case FrameType.headers:
        stream.receiveHeaders(parseJson(HeaderBlockValue, frame.payload, 'header block'), end);
        break;
      case FrameType.window:
        if (frame.payload.length !== 4)
          throw new TunnelProtocolError('window frame without a 4-byte increment');
        stream.receiveWindowUpdate(frame.payload.readUInt32BE(0));
        break;
      case FrameType.reset: {
        const reset = parseJson(ResetPayload, frame.payload, 'reset');
        stream.receiveReset(reset.code, reset.message);
        break;
      }
      default:
        throw new TunnelProtocolError(`frame type ${frame.type} is not valid on a stream`);
    }
  }

  private isKnownStreamId(id: number): boolean {
    const ours = (id % 2 === 1) === (this.role === 'client');
    return ours ? id < this.nextStreamId : id <= this.highestPeerStreamId;
  }

  private acceptStream(frame: Frame): void {
    const peersParity = this.role === 'client' ? 0 : 1;
    if (frame.stream % 2 !== peersParity || frame.stream <= this.highestPeerStreamId) {
      throw new TunnelProtocolError(
        `the peer opened stream ${frame.stream}, which is not a new id of its own`,
      );
    }
    this.highestPeerStreamId = frame.stream;
    const open = parseJson(StreamOpen, frame.payload, `open of stream ${frame.stream}`);
    const stream = new TunnelStream(this, frame.stream, open);
    this.streams.set(frame.stream, stream);
    if (this.listenerCount('stream') === 0)
      stream.reset(TunnelCode.refused, `this end does not accept ${open.kind} streams`);
    else this.emit('stream', stream);
  }

  private dispatchConnectionFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.ping:
        if ((frame.flags & FrameFlag.ack) === 0) this.send(FrameType.ping, FrameFlag.ack, 0, frame.payload);
        break;
      case FrameType.goaway: {
        const reason = parseJson(GoAway, frame.payload, 'goaway');
        // A peer that refused our version said its own: the refusal in this end's words, with its fix.
        this.closedWith =
          reason.code === TunnelCode.version && reason.version !== undefined
            ? this.versionRefusal({ version: reason.version, release: reason.release })
            : new TunnelClosedError(reason.code, reason.message);
        this.socket.end();
        this.terminate(this.closedWith);
        break;
      }
      case FrameType.control:
        this.dispatchControl(parseJson(ControlMessage, frame.payload, 'control message'));
        break;
      default:
        throw new TunnelProtocolError(`frame type ${frame.type} is not valid after the handshake`);
    }
  }

  private dispatchControl(message: ControlMessage): void {
    switch (message.type) {
      case 'request':
        this.answer(message.id, message.method, message.params);
        break;
      case 'response':
        this.pendingRequests.get(message.id)?.resolve(message.result);
        this.pendingRequests.delete(message.id);
        break;
      case 'error':
        this.pendingRequests.get(message.id)?.reject(new TunnelStreamError(message.code, message.message));
        this.pendingRequests.delete(message.id);
        break;
      case 'event':
        this.emit('event', message.name, message.data);
        break;
    }
  }

  private async answer(id: number, method: string, params: unknown): Promise<void> {
    try {
      if (!this.controlHandler)
        throw new TunnelStreamError(TunnelCode.refused, `this end answers no control requests (${method})`);
      const result = await this.controlHandler(method, params);
      this.send(FrameType.control, 0, 0, json({ type: 'response', id, result: result ?? null }));
    } catch (error) {
      const failure = error as { code?: string; message?: string };
      this.send(
        FrameType.control,
        0,
        0,
        json({
          type: 'error',
          id,
          code: failure.code ?? 'DETOUR_CONTROL_FAILED',
          message: failure.message ?? String(error),
        }),
      );
    }
  }

  private terminate(reason: TunnelClosedError | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closedWith ??= reason;
    clearInterval(this.heartbeat);
    for (const stream of [...this.streams.values()])
      stream.receiveReset(reason?.code ?? TunnelCode.closed, reason?.message ?? 'the tunnel closed');
    for (const pending of this.pendingRequests.values())
      pending.reject(reason ?? new TunnelClosedError(TunnelCode.closed, 'the tunnel closed'));
    this.pendingRequests.clear();
    this.flushDrainWaiters();
    this.emit('close', reason);
  }
}

function tokensEqual(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}
