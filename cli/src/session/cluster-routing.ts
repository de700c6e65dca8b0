import {
  adapterFor,
  applySession,
  buildLease,
  type ClusterClient,
  checkFilterConflict,
  detectMesh,
  type KubeObject,
  kubeClient,
  type LeaseRef,
  leaseName,
  leasesOf,
  type MeshAdapter,
  type MeshKind,
  revertSession,
  type SessionIntent,
  type SessionMode,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';
import { governingVirtualService } from '@detour/mesh-adapters/istio-virtualservice/governing';
import type { Write } from '@detour/mesh-adapters/plan';
import type { RouteFilter } from '@detour/router/match/index';
import type { KubeConfig } from '@kubernetes/client-node';
import { discoverMesh } from '../kube/mesh-discovery.ts';
import type { ResolvedTarget } from '../kube/target.ts';
import type { Reporter } from '../reporter.ts';
import { type LeaseInterruption, SessionLease } from './session-lease.ts';

export interface ClusterRoutingOptions {
  kc: KubeConfig;
  target: ResolvedTarget;
  sessionId: string;
  holder: string;
  filter: RouteFilter;
  mode: 'steal' | 'steal-all' | 'mirror';
  agent: { name: string; namespace: string; port: number; selector: Record<string, string> };
  mesh?: MeshKind;
  leaseSeconds: number;
  reporter: Reporter;
  /** The Lease was renewed late, or found gone (see SessionLease). */
  onLeaseInterrupted: (interruption: LeaseInterruption) => void;
}

/**
 * The cluster side of a session: its Lease (created first, so the objects the route creates can
 * be owned by it), the route written through the mesh adapter, the Lease renewed while the
 * session lives, and on stop the route reverted exactly and the Lease deleted. If this process
 * dies, the Lease expires and any detour's janitor reverts the route.
 */
export class ClusterRouting {
  readonly #options: ClusterRoutingOptions;
  readonly #client: ClusterClient;
  #lease: SessionLease | undefined;
  #adapter: MeshAdapter | undefined;

  constructor(options: ClusterRoutingOptions) {
    this.#options = options;
    this.#client = kubeClient(options.kc);
  }

  get adapter(): MeshKind | undefined {
    return this.#adapter?.kind;
  }

  /** The session's Lease once acquired (with its uid: what objects of the session are owned by). */
  get lease(): LeaseRef | undefined {
    return this.#lease?.ref;
  }

  /**
   * Detects the mesh, refuses a filter another live session holds, and creates the session's Lease
   * (carrying the tunnel token's hash, which is how the agent admits this CLI). Nothing is routed yet.
   */
  async acquireLease(tokenSha256: string): Promise<void> {
    const { target, reporter } = this.#options;
    const namespace = target.namespace;
    const discovery = await discoverMesh(this.#options.kc, namespace);
    const governing = await this.#governingVirtualService(discovery.crds);
    if (governing && this.#options.mesh === 'gateway-api') {
      reporter.warn(
        'mesh.takeover',
        `VirtualService ${governing.metadata.namespace}/${governing.metadata.name} routes ${target.service.host}: while detour's HTTPRoute is attached, Istio routes the Service by the HTTPRoute, so that VirtualService's routes (subsets, retries) do not apply to anyone; prefer --mesh istio here`,
      );
    }
    const detection = detectMesh({
      ...discovery,
      podLabels: target.template.metadata?.labels ?? {},
      governingVirtualService: governing,
      ...(this.#options.mesh ? { override: this.#options.mesh } : {}),
    });
    reporter.step('mesh.detected', `routing with ${detection.mesh}: ${detection.reason}`, {
      mesh: detection.mesh,
      reason: detection.reason,
    });
    this.#adapter = adapterFor(detection.mesh);
    await this.#createLease(this.#adapter, tokenSha256);
  }

  /**
   * After the Lease was found gone: what a janitor may not have reverted yet of the old route is
   * removed, the filter is checked again (someone may have taken it meanwhile: FilterHeldError),
   * and a new Lease is created with the same token. `route()` then writes the route again.
   */
  async reacquireLease(tokenSha256: string): Promise<void> {
    if (!this.#adapter) throw new Error('reacquireLease() before acquireLease()');
    this.#lease = undefined;
    await revertSession(this.#client, this.#adapter, this.#options.sessionId);
    await this.#createLease(this.#adapter, tokenSha256);
  }

  async #createLease(adapter: MeshAdapter, tokenSha256: string): Promise<void> {
    const intent = this.#intent(undefined);
    const leases = leasesOf(
      await this.#client.list({ ...QUERIES.leases, namespace: this.#options.target.namespace }),
    );
    checkFilterConflict(leases, intent, new Date());
    this.#lease = await SessionLease.create(
      this.#client,
      buildLease(intent, new Date(), {
        durationSeconds: this.#options.leaseSeconds,
        adapter: adapter.kind,
        tokenSha256,
      }),
      this.#options.reporter,
      this.#options.onLeaseInterrupted,
    );
  }

  /**
   * Writes the route through the mesh adapter (the Lease must be held); resolves with when the write
   * began. Idempotent: run again, it writes only what is missing. A failure leaves undoing to stop().
   */
  async route(): Promise<number> {
    const began = Date.now();
    const { reporter, sessionId } = this.#options;
    if (!this.#adapter || !this.#lease) throw new Error('route() before acquireLease()');
    const result = await applySession(this.#client, this.#adapter, this.#intent(this.#lease.uid));
    for (const warning of result.warnings) reporter.warn('route.warning', warning);
    reporter.step(
      'route.applied',
      `route for session ${sessionId} written to ${result.applied.map(describeWrite).join(', ') || 'nothing new'}`,
      {
        writes: result.applied.length,
        attempts: result.attempts,
      },
    );
    return began;
  }

  async #governingVirtualService(crds: readonly string[]): Promise<KubeObject | undefined> {
    const { target } = this.#options;
    if (!crds.includes('virtualservices.networking.istio.io')) return undefined;
    const observed = await this.#client.list(QUERIES.virtualServices);
    return governingVirtualService(observed, target.service.host).virtualService;
  }

  #intent(leaseUid: string | undefined): SessionIntent {
    const { target, filter, sessionId, holder, agent } = this.#options;
    const mode: SessionMode =
      this.#options.mode === 'steal-all' ? { kind: 'steal-all' } : { kind: this.#options.mode, filter };
    return {
      sessionId,
      target: { namespace: target.namespace, host: target.service.host, port: target.service.port },
      mode,
      agent,
      holder,
      lease: {
        name: leaseName(sessionId),
        namespace: target.namespace,
        ...(leaseUid ? { uid: leaseUid } : {}),
      },
    };
  }

  /** Reverts the route exactly and deletes the Lease. Safe to call twice. */
  async stop(): Promise<void> {
    const { reporter, sessionId } = this.#options;
    if (this.#adapter) {
      const result = await revertSession(this.#client, this.#adapter, sessionId);
      reporter.step(
        'route.reverted',
        `route of session ${sessionId} removed (${result.applied.length} write(s))`,
        { writes: result.applied.length },
      );
    }
    await this.#lease?.delete();
  }
}

export function describeWrite(write: Write): string {
  const ref = write.op === 'delete' ? write.ref : { kind: write.object.kind, ...write.object.metadata };
  return `${write.op} ${ref.kind} ${ref.namespace ?? ''}/${ref.name}`;
}
