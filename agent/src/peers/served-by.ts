/**
 * What the agent replica holding a session's tunnel writes on the session's Lease
 * (`detour.dev/served-by`): its pod, the address its inbound listener is reached at inside the
 * pod network, and what the session takes, so every other replica can tell the session's requests
 * and forward them there.
 */
import { LEASE_ANNOTATIONS } from '@detour/mesh-adapters';
import * as z from '@detour/router/zod';

export const ServedBy = z.object({
  pod: z.string().check(z.minLength(1)),
  /** `ip:port` of the holder's inbound listener. */
  address: z.string().check(z.regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/)),
  mode: z.enum(['steal', 'mirror']),
  filter: z.unknown(),
  /** FQDN of the session's target Service; absent: any host. */
  targetHost: z.optional(z.string().check(z.minLength(1))),
});
export type ServedBy = z.infer<typeof ServedBy>;

export function servedByOf(annotations: Record<string, string> | undefined): ServedBy | undefined {
  const text = annotations?.[LEASE_ANNOTATIONS.servedBy];
  if (text === undefined) return undefined;
  try {
    const parsed = ServedBy.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
