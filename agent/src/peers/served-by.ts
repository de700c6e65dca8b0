/**
 * What the agent replicas holding a session's tunnel write on the session's Lease
 * (`detour.dev/served-by`): each holder's pod and the address its inbound listener is reached at
 * inside the pod network, and what the session takes. A CLI holds a tunnel to every replica it can
 * reach, so a session usually has several holders; a replica that holds none (one that just
 * started) forwards the session's requests to one that does, and a replica whose tunnel dropped
 * leaves the session alone while another still holds it.
 */
import { LEASE_ANNOTATIONS } from '@detour/mesh-adapters';
import * as z from '@detour/router/zod';

export const Holder = z.object({
  pod: z.string().check(z.minLength(1)),
  /** `ip:port` of the holder's inbound listener. */
  address: z.string().check(z.regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/)),
});
export type Holder = z.infer<typeof Holder>;

export const ServedBy = z.object({
  holders: z.array(Holder).check(z.minLength(1)),
  mode: z.enum(['steal', 'mirror', 'egress-only']),
  /** What a routed session takes; absent for an egress-only one. */
  filter: z.optional(z.unknown()),
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

/**
 * The annotation with `self` added as a holder of `session` (its entry refreshed), or with `self`
 * removed (`session` undefined); undefined when no holder is left: the annotation goes.
 */
export function withHolder(
  current: ServedBy | undefined,
  self: Holder,
  session: Omit<ServedBy, 'holders'> | undefined,
): ServedBy | undefined {
  const holders = current?.holders ?? [];
  if (session) {
    const known = holders.some((holder) => holder.pod === self.pod);
    return {
      ...session,
      holders: known
        ? holders.map((holder) => (holder.pod === self.pod ? self : holder))
        : [...holders, self],
    };
  }
  const others = holders.filter((holder) => holder.pod !== self.pod);
  return current && others.length > 0 ? { ...current, holders: others } : undefined;
}
