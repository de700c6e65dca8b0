import type { EgressDialer, ResolvedAddress } from '@detour/router/egress/dialer';
import type { EgressDecision, EgressPolicy } from '@detour/router/egress/egress-policy';

export interface EgressRoute {
  decision: EgressDecision;
  dialer: EgressDialer;
}

/** Picks, per destination, the dialer the proxy uses: the tunnel's (remote) or this machine's (local). */
export class EgressRouter {
  readonly policy: EgressPolicy;
  readonly #remote: EgressDialer;
  readonly #local: EgressDialer;

  constructor(options: { policy: EgressPolicy; remote: EgressDialer; local: EgressDialer }) {
    this.policy = options.policy;
    this.#remote = options.remote;
    this.#local = options.local;
  }

  route(host: string): EgressRoute {
    const decision = this.policy.decide(host);
    return { decision, dialer: decision === 'remote' ? this.#remote : this.#local };
  }

  /** Resolves where the name would be dialed; remembers remote answers so connections to them go remote. */
  async lookup(name: string, family: 0 | 4 | 6): Promise<ResolvedAddress[]> {
    const { decision, dialer } = this.route(name);
    const found = await dialer.lookup(name, family);
    if (decision === 'remote') this.policy.noteRemoteAddresses(found.map((a) => a.address));
    return found;
  }
}
