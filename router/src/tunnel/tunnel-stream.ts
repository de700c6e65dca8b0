import { Duplex } from 'node:stream';
import {
  FrameFlag,
  FrameType,
  type FrameTypeCode,
  INITIAL_STREAM_WINDOW,
  MAX_DATA_CHUNK,
  type StreamOpen,
  TunnelCode,
} from './protocol.ts';
import { TunnelProtocolError, TunnelStreamError } from './tunnel-errors.ts';

/** What a stream needs from its connection. */
export interface FrameSink {
  /** Queues a frame; returns false when the socket is congested (the caller should wait). */
  send(type: FrameTypeCode, flags: number, stream: number, payload?: Buffer): boolean;
  /** Runs `callback` once the socket has drained. */
  whenWritable(callback: () => void): void;
  /** The stream is finished and can be forgotten. */
  released(stream: TunnelStream): void;
  /** The peer broke the protocol on this stream; the connection must close. */
  violated(error: TunnelProtocolError): void;
}

/** A JSON header block written in order with the stream's bytes (response head, trailers, ...). */
class HeaderBlock {
  readonly value: unknown;
  constructor(value: unknown) {
    this.value = value;
  }
}

const emptyPayload = Buffer.alloc(0);

/** A written chunk as it is framed: strings (object mode keeps them) are encoded once, here. */
function frameable(chunk: unknown): Buffer | HeaderBlock {
  return typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer | HeaderBlock);
}
/** Credit is returned in batches, not per frame, to keep WINDOW frames rare. */
const creditBatch = INITIAL_STREAM_WINDOW / 4;

/**
 * One multiplexed stream. Writes are split into DATA frames within the send window the peer
 * granted; the receive side grants credit back only as the reader consumes, so a slow reader
 * throttles its own sender and never the other streams on the connection.
 * `headers` events carry the JSON header blocks the peer sent; `writeHeaders` sends one in order.
 */
export class TunnelStream extends Duplex {
  readonly id: number;
  readonly open: StreamOpen;
  private readonly sink: FrameSink;
  private sendWindow = INITIAL_STREAM_WINDOW;
  private receiveWindow = INITIAL_STREAM_WINDOW;
  private pendingCredit = 0;
  private resumeWrite: (() => void) | undefined;
  private localEnded = false;
  private remoteEnded = false;
  private resetDone = false;

  constructor(sink: FrameSink, id: number, open: StreamOpen) {
    super({ writableObjectMode: true, allowHalfOpen: true });
    this.sink = sink;
    this.id = id;
    this.open = open;
  }

  /** Sends a JSON header block after everything written so far. */
  writeHeaders(value: unknown, callback?: (error?: Error | null) => void): boolean {
    return this.write(new HeaderBlock(value), callback);
  }

  /** Sends a JSON header block and ends the stream (trailers, a DNS answer, ...). */
  endWithHeaders(value: unknown): this {
    return this.end(new HeaderBlock(value));
  }

  /**
   * Aborts the stream on both ends with a code the peer sees (errno-like codes are kept). Locally
   * the stream closes without an error; to fail it locally too, `destroy(error)` with a `code`.
   */
  reset(code: string, message: string): void {
    if (!this.resetDone && !(this.localEnded && this.remoteEnded)) {
      this.resetDone = true;
      this.sink.send(FrameType.reset, 0, this.id, Buffer.from(JSON.stringify({ code, message })));
    }
    this.destroy();
  }

  override _write(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.sendChunks([frameable(chunk)], 0, 0, callback);
  }

  /**
   * What was written while the connection was congested leaves together: one DATA frame per turn
   * of the event loop would make a bulk transfer one socket write per chunk.
   */
  override _writev(chunks: Array<{ chunk: unknown }>, callback: (error?: Error | null) => void): void {
    this.sendChunks(
      chunks.map(({ chunk }) => frameable(chunk)),
      0,
      0,
      callback,
    );
  }

  /** Sends chunks[index] from `offset` on, and the chunks after it, within the send window. */
  private sendChunks(
    chunks: Array<Buffer | HeaderBlock>,
    index: number,
    offset: number,
    callback: (error?: Error | null) => void,
  ): void {
    let flowing = true;
    for (let i = index, from = offset; i < chunks.length; i++, from = 0) {
      const chunk = chunks[i] as Buffer | HeaderBlock;
      if (chunk instanceof HeaderBlock) {
        flowing = this.sink.send(FrameType.headers, 0, this.id, Buffer.from(JSON.stringify(chunk.value)));
        continue;
      }
      while (from < chunk.length) {
        if (this.sendWindow <= 0) {
          this.resumeWrite = () => this.sendChunks(chunks, i, from, callback);
          return;
        }
        const size = Math.min(this.sendWindow, MAX_DATA_CHUNK, chunk.length - from);
        this.sendWindow -= size;
        flowing = this.sink.send(FrameType.data, 0, this.id, chunk.subarray(from, from + size));
        from += size;
      }
    }
    this.afterSend(flowing, callback);
  }

  private afterSend(flowing: boolean, callback: () => void): void {
    if (flowing) callback();
    else this.sink.whenWritable(callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.localEnded = true;
    this.sink.send(FrameType.data, FrameFlag.endStream, this.id, emptyPayload);
    this.releaseIfDone();
    callback();
  }

  /**
   * Once both ends sent their END, the peer can send nothing more on this id: the connection forgets
   * it even if the owner never drains the readable side (which would keep the Duplex alive).
   */
  private releaseIfDone(): void {
    if (this.localEnded && this.remoteEnded) this.sink.released(this);
  }

  override _read(): void {
    this.grantCredit();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.resetDone && !(this.localEnded && this.remoteEnded)) {
      this.resetDone = true;
      const code = (error as { code?: string } | null)?.code ?? TunnelCode.cancel;
      const message = error?.message ?? 'stream closed before it ended';
      this.sink.send(FrameType.reset, 0, this.id, Buffer.from(JSON.stringify({ code, message })));
    }
    this.resumeWrite = undefined;
    this.sink.released(this);
    callback(error);
  }

  /** @internal the connection delivers the peer's frames here. */
  receiveData(payload: Buffer, end: boolean): void {
    if (this.remoteEnded) {
      this.sink.violated(new TunnelProtocolError(`data on stream ${this.id} after its end`));
      return;
    }
    this.receiveWindow -= payload.length;
    if (this.receiveWindow < 0) {
      this.sink.violated(new TunnelProtocolError(`stream ${this.id} overran its flow-control window`));
      return;
    }
    if (payload.length > 0) {
      this.pendingCredit += payload.length;
      if (this.push(payload) && this.pendingCredit >= creditBatch) this.grantCredit();
    }
    if (end) this.receiveEnd();
  }

  /** @internal */
  receiveHeaders(value: unknown, end: boolean): void {
    this.emit('headers', value);
    if (end) this.receiveEnd();
  }

  /** @internal */
  receiveWindowUpdate(increment: number): void {
    this.sendWindow += increment;
    const resume = this.resumeWrite;
    this.resumeWrite = undefined;
    resume?.();
  }

  /** @internal */
  receiveReset(code: string, message: string): void {
    this.resetDone = true;
    // A stream that already ended both ways has nothing to lose: no error for its owner to handle.
    this.destroy(this.localEnded && this.remoteEnded ? undefined : new TunnelStreamError(code, message));
  }

  private receiveEnd(): void {
    this.remoteEnded = true;
    this.push(null);
    this.releaseIfDone();
  }

  private grantCredit(): void {
    if (this.pendingCredit === 0 || this.remoteEnded || this.destroyed) return;
    const credit = Buffer.allocUnsafe(4);
    credit.writeUInt32BE(this.pendingCredit, 0);
    this.receiveWindow += this.pendingCredit;
    this.pendingCredit = 0;
    this.sink.send(FrameType.window, 0, this.id, credit);
  }
}
