import type { Duplex } from 'node:stream';
import type { EgressRouter } from './egress-router.ts';

/** Counters the proxy keeps; tests use them to prove what went through it. */
export interface EgressProxyStats {
  /** Accepted client connections, all protocols. */
  connections: number;
  socksConnect: number;
  socksResolve: number;
  /** FORWARD requests from the Node layer. */
  layerForward: number;
  httpConnect: number;
  httpForward: number;
  /** Dials made, by the route taken. */
  remote: number;
  local: number;
  failed: number;
}

/** What a protocol session needs from the proxy that accepted its connection. */
export interface ProxyContext {
  readonly router: EgressRouter;
  readonly stats: EgressProxyStats;
  /** How long a FORWARD's one-shot port waits for the layer's connection. */
  readonly forwardTimeoutMs: number;
  /** Registers a stream so that closing the proxy destroys it. */
  track<T extends Duplex>(stream: T): T;
  /** Dials host:port through the route the policy picks, counting the outcome. */
  dial(host: string, port: number): Promise<Duplex>;
}
