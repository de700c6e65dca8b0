/** The `detour help` lines of `detour feature` (no imports: `detour help` loads it). */
export const featureUsage = `  detour feature up NAME -n NS --header x-dev=NAME --workload SERVICE[:PORT]=deploy/WORKLOAD... [--ttl 8h]
                     [--mesh istio|istio-envoyfilter] [--agent-service detour-agent] [--route-timeout 30] [--json]
                                        route the header's requests for each Service to that workload (again: renew the TTL)
  detour feature list [-n NS | -A] [--json]
                                        the feature environments: header, workloads, holder, expiry
  detour feature down NAME -n NS [--json]
                                        remove an environment: routes, subsets and its lease, exactly`;
