import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * Deterministic bytes for large-body tests: AES-256-CTR over zeros with a fixed key. Fast, looks
 * random (no compression helps a broken proxy), and any process can regenerate the same bytes.
 */
const key = Buffer.alloc(32, 7);
const iv = Buffer.alloc(16, 0);
const chunkSize = 256 * 1024;

export function payloadStream(bytes: number): Readable {
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const zeros = Buffer.alloc(chunkSize);
  let left = bytes;
  return new Readable({
    read() {
      while (left > 0) {
        const n = Math.min(left, chunkSize);
        left -= n;
        if (!this.push(cipher.update(n === chunkSize ? zeros : zeros.subarray(0, n)))) return;
      }
      this.push(null);
    },
  });
}

export async function payloadSha256(bytes: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of payloadStream(bytes)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
