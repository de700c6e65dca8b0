import { timingSafeEqual } from 'node:crypto';
import {
  type ClusterClient,
  isDetourLease,
  isExpired,
  LEASE_ANNOTATIONS,
  leasesOf,
  tokenSha256,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';

/**
 * Admits a CLI whose token hashes to the `detour.dev/token-sha256` of a live session Lease in the
 * agent's namespace. No shared secret to distribute: whoever may create that Lease and port-forward
 * to the agent (both RBAC-checked by the apiserver) holds a session, and only while it renews it.
 */
export function leaseTokenAuthenticator(
  client: ClusterClient,
  namespace: string,
): (token: string) => Promise<boolean> {
  return async (token) => {
    const presented = Buffer.from(tokenSha256(token));
    const now = new Date();
    return leasesOf(await client.list({ ...QUERIES.leases, namespace }))
      .filter((lease) => isDetourLease(lease) && !isExpired(lease, now))
      .some((lease) => {
        const expected = Buffer.from(lease.metadata.annotations?.[LEASE_ANNOTATIONS.tokenSha256] ?? '');
        return expected.length === presented.length && timingSafeEqual(expected, presented);
      });
  };
}
