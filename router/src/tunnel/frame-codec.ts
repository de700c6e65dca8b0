import {
  FRAME_HEADER_BYTES,
  type Frame,
  FrameType,
  type FrameTypeCode,
  MAX_FRAME_PAYLOAD,
} from './protocol.ts';
import { TunnelProtocolError } from './tunnel-errors.ts';

const empty = Buffer.alloc(0);
const knownTypes = new Set<number>(Object.values(FrameType));

export function encodeFrameHeader(
  type: FrameTypeCode,
  flags: number,
  stream: number,
  length: number,
): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length, 0);
  header.writeUInt8(type, 4);
  header.writeUInt8(flags, 5);
  header.writeUInt32BE(stream, 6);
  return header;
}

/**
 * Turns a byte stream into frames. Chunks are kept as received: a DATA frame that straddles chunks
 * comes out as one DATA frame per piece (the flags on the last), so bulk DATA is never copied (the
 * socket's 64 KiB reads rarely line up with frames); only other frames that straddle are. Throws
 * TunnelProtocolError on an unknown frame type or an oversized length; the caller closes the connection.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Feeds bytes and returns every frame they complete. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.buffered >= FRAME_HEADER_BYTES) {
      const header = this.peek(FRAME_HEADER_BYTES);
      const length = header.readUInt32BE(0);
      const type = header.readUInt8(4);
      if (!knownTypes.has(type)) throw new TunnelProtocolError(`unknown frame type ${type}`);
      if (length > MAX_FRAME_PAYLOAD) {
        throw new TunnelProtocolError(`frame of ${length} bytes exceeds the limit of ${MAX_FRAME_PAYLOAD}`);
      }
      if (this.buffered < FRAME_HEADER_BYTES + length) break;
      const flags = header.readUInt8(5);
      const stream = header.readUInt32BE(6);
      this.take(FRAME_HEADER_BYTES);
      if (type === FrameType.data) this.takeData(length, flags, stream, frames);
      else frames.push({ type: type as FrameTypeCode, flags, stream, payload: this.take(length) });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    return Buffer.concat(this.chunks, this.buffered).subarray(0, n);
  }

  private takeData(n: number, flags: number, stream: number, frames: Frame[]): void {
    let left = n;
    while (left > 0 && left > (this.chunks[0] as Buffer).length) {
      const piece = this.chunks.shift() as Buffer;
      left -= piece.length;
      this.buffered -= piece.length;
      frames.push({ type: FrameType.data, flags: 0, stream, payload: piece });
    }
    frames.push({ type: FrameType.data, flags, stream, payload: this.take(left) });
  }

  private take(n: number): Buffer {
    if (n === 0) return empty;
    this.buffered -= n;
    const first = this.chunks[0] as Buffer;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const chunk = this.chunks[0] as Buffer;
      const used = Math.min(chunk.length, n - offset);
      chunk.copy(out, offset, 0, used);
      offset += used;
      if (used === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(used);
    }
    return out;
  }
}
