import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Pipes bytes both ways with backpressure. Each direction ends its destination when its source
 * ends (half-close); an error on either side destroys both; when both directions are done both
 * sides are destroyed, so no socket outlives its peer.
 */
export async function relay(a: Duplex, b: Duplex): Promise<void> {
  await Promise.allSettled([pipeline(a, b), pipeline(b, a)]);
  a.destroy();
  b.destroy();
}
