/**
 * The routing filter of a session. Its shape is a subset of Istio's HTTPMatchRequest on purpose:
 * the mesh adapters copy it into mesh config unchanged, and the agent evaluates the same object
 * itself, so both ends agree on what a match is.
 */

/** Istio StringMatch: exactly one of the three keys. An empty object means "present". */
export type StringMatch = { exact: string } | { prefix: string } | { regex: string } | Record<string, never>;

export interface RouteFilter {
  /** Every header listed must match (names are lower-case). `{}` means the header must be present. */
  headers?: Record<string, StringMatch>;
  /** No header listed may match. `{}` means the header must be absent. */
  withoutHeaders?: Record<string, StringMatch>;
  uri?: StringMatch;
  method?: StringMatch;
}
