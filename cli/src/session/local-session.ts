import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { homedir, hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { layerEnv } from '@detour/layer';
import {
  buildEgressOnlyLease,
  kubeClient,
  type LeaseRef,
  leaseName,
  tokenSha256,
} from '@detour/mesh-adapters';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { EgressPolicy } from '@detour/router/egress/egress-policy';
import { TunnelDialer } from '@detour/router/egress/tunnel-dialer';
import { DetourError, InvalidInputError } from '@detour/router/errors';
import { type LocalAppFailure, LocalAppForwarder } from '@detour/router/http/serve-from-tunnel';
import { exampleRequest, formatFilter, type RouteFilter } from '@detour/router/match/index';
import {
  type RouteProbeParams,
  RouteProbeResult,
  TunnelCode,
  type TunnelConnection,
  type TunnelStream,
} from '@detour/router/tunnel/index';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { EgressProxy } from '../egress/egress-proxy.ts';
import { EgressRouter } from '../egress/egress-router.ts';
import { ephemeralAgentObjects, ephemeralAgentService } from '../install/agent-manifests.ts';
import { type AgentPortForward, forwardToAgent } from '../kube/agent-port-forward.ts';
import { loadKubeConfig } from '../kube/kubeconfig.ts';
import { requireNamespace } from '../kube/namespace.ts';
import {
  type ResolvedTarget,
  type ResolvedWorkload,
  resolveTarget,
  resolveWorkload,
} from '../kube/target.ts';
import { requireSecretAccess, targetEnvironment } from '../kube/target-env.ts';
import type { SessionOptions } from '../options.ts';
import type { Reporter } from '../reporter.ts';
import { agentImage } from '../version.ts';
import { AgentTunnel, type AgentTunnels, dial } from './agent-tunnel.ts';
import { ClusterRouting, type ClusterRoutingOptions } from './cluster-routing.ts';
import { EphemeralAgent } from './ephemeral-agent.ts';
import { sessionProcessEnv } from './process-env.ts';
import { ReplicaTunnels } from './replica-tunnels.ts';
import { type LeaseInterruption, SessionLease } from './session-lease.ts';
import { type RoutedMode, SAFE_METHODS, type SessionMode, sessionModeFromOptions } from './session-mode.ts';

export interface PortMapping {
  target: number;
  local: number;
}

export function parsePortMapping(value: string): PortMapping {
  const [target, local = target] = value.split(':');
  const mapping = { target: Number(target), local: Number(local) };
  for (const port of [mapping.target, mapping.local]) {
    if (!(port >= 1 && port <= 65535))
      throw new InvalidInputError('DETOUR_BAD_OPTION', `--port ${value}: ${port} is not a port (1-65535)`);
  }
  return mapping;
}

/** How long an outbound call waits for a tunnel that is reconnecting, rather than failing at once. */
const tunnelReconnectWaitMs = 5_000;

/** The shortest time between two warnings of requests the local app did not answer. */
const localAppWarningMs = 10_000;

function defaultSessionId(): string {
  const user =
    userInfo()
      .username.toLowerCase()
      .replace(/[^a-z0-9]/g, '')
      .slice(0, 30) || 'dev';
  return `${user}-${randomBytes(3).toString('hex')}`;
}

/**
 * A developer's session on this machine: the tunnel to the agent, the session registered there,
 * the loopback egress proxy for the app's calls and, unless it is egress-only, inbound requests
 * served to the local app. In a cluster (`--target`, or `--egress-only` without `--agent`) also the
 * session's Lease, the target's environment and, for a routed session, the route in the mesh.
 */
export class LocalSession {
  readonly id: string;
  readonly mode: SessionMode;
  /** Variables of the target env that come from Secrets: their values are never printed. */
  secretVariables: ReadonlySet<string> = new Set();
  readonly #options: SessionOptions;
  readonly #reporter: Reporter;
  #tunnel: AgentTunnels | undefined;
  #portForward: AgentPortForward | undefined;
  readonly #proxy: EgressProxy;
  readonly #forwarder: LocalAppForwarder;
  #ports: PortMapping | undefined;
  #routing: ClusterRouting | undefined;
  /** An egress-only session's Lease (a routed session's is held by its ClusterRouting). */
  #lease: SessionLease | undefined;
  #targetEnv: Record<string, string> = {};
  #targetHost: string | undefined;
  #targetService: { host: string; port: number } | undefined;
  #leaseRef: { name: string; namespace: string } | undefined;
  #proxyAddress: { host: string; port: number } | undefined;
  #ephemeral: EphemeralAgent | undefined;
  /** The start got as far as `session.ready`: only then did a session exist to end. */
  #ready = false;
  /** Aborted when the session stops: ends the waits of a resume. */
  readonly #stopping = new AbortController();
  /** What a cluster session's Lease is made from again when it was lost. */
  #leaseInputs: { kc: KubeConfig; target: ResolvedWorkload | undefined; tokenHash: string } | undefined;
  /** Bringing the session back after its Lease was interrupted (one at a time). */
  #resuming: Promise<void> | undefined;
  /** An interruption heard while a resume ran: handled once it ends. */
  #interruptedMeanwhile: LeaseInterruption | undefined;
  readonly #failure = Promise.withResolvers<DetourError>();
  /** When a failed request was last reported, and how many failed since. */
  #failureWarned = { at: 0, since: 0 };

  constructor(options: SessionOptions, reporter: Reporter) {
    this.#options = options;
    this.#reporter = reporter;
    this.mode = sessionModeFromOptions(options);
    if (!options.target && !options.port && this.mode.kind !== 'egress-only') {
      throw new InvalidInputError(
        'DETOUR_BAD_OPTION',
        '--port is required without --target: the port your local app listens on, e.g. --port 8080',
      );
    }
    if (options.port) this.#ports = parsePortMapping(options.port);
    this.id = options.session ?? defaultSessionId();
    this.#forwarder = new LocalAppForwarder({
      localPort: () => this.ports.local,
      onFailure: (failure) => this.#localAppFailed(failure),
    });
    const policy = new EgressPolicy({ include: options.egressInclude, exclude: options.egressExclude });
    this.#proxy = new EgressProxy({
      port: options.proxyPort,
      router: new EgressRouter({
        policy,
        // A call made while the tunnel reconnects waits for it rather than failing.
        remote: new TunnelDialer(() => this.#tunnel?.current, { reconnectWaitMs: tunnelReconnectWaitMs }),
        local: new DirectDialer(),
      }),
    });
  }

  /**
   * Settles if the session is lost for good while it runs (its Lease ended and its filter taken by
   * another session meanwhile, say): the command should end, with this error.
   */
  get failed(): Promise<DetourError> {
    return this.#failure.promise;
  }

  /**
   * A request the local app did not answer: its caller got the 502 and the fix, and so does the
   * developer here, at most every 10 s (a retrying client must not flood the terminal).
   */
  #localAppFailed({ method, path, text, code }: LocalAppFailure): void {
    const now = Date.now();
    if (now - this.#failureWarned.at < localAppWarningMs) {
      this.#failureWarned.since++;
      return;
    }
    const more = this.#failureWarned.since;
    this.#failureWarned = { at: now, since: 0 };
    this.#reporter.warn(
      'request.failed',
      `${method} ${path} for session ${this.id} reached this machine, but ${text}${more > 0 ? ` (${more} more failed since the last warning)` : ''}`,
      { method, path, code, more },
    );
  }

  /** The requests this session takes; undefined for an egress-only session. */
  get filter(): RouteFilter | undefined {
    return this.mode.filter;
  }

  /** One line for status output: `steal x-dev=dev-a`, `egress-only`. */
  describe(): string {
    return this.mode.filter ? `${this.mode.kind} ${formatFilter(this.mode.filter)}` : this.mode.kind;
  }

  get ports(): PortMapping {
    if (!this.#ports) throw new Error('the target port is known once the target is resolved');
    return this.#ports;
  }

  get agentAddress(): string {
    return this.#portForward?.address ?? this.#options.agent ?? '';
  }

  #serve(stream: TunnelStream): void {
    if (stream.open.kind !== 'http' || !this.mode.filter) {
      stream.reset(TunnelCode.refused, `this session does not accept ${stream.open.kind} streams`);
      return;
    }
    this.#forwarder.serve(stream);
  }

  /** The environment that puts a local process in this session (call after `start`). */
  processEnv(): Record<string, string> {
    if (!this.#proxyAddress) throw new Error('the session has not started');
    const { carried } = this.mode;
    return {
      ...this.#targetEnv,
      ...sessionProcessEnv({
        proxyEnv: this.#proxy.env(),
        proxy: this.#proxyAddress,
        // The session's own header names, the carried ones, and W3C baggage ride along on the app's outbound calls.
        routingHeaders: [
          ...new Set([...Object.keys(this.mode.filter?.headers ?? {}), ...Object.keys(carried), 'baggage']),
        ],
        cacheDir: join(homedir(), '.cache', 'detour'),
      }),
      ...(Object.keys(carried).length > 0 ? { [layerEnv.defaultHeaders]: JSON.stringify(carried) } : {}),
    };
  }

  /** What the agent is told of this session each time the tunnel (re)connects. */
  #registration(): Record<string, unknown> {
    const lease = this.#leaseRef ? { lease: this.#leaseRef } : {};
    if (this.mode.kind === 'egress-only') return { id: this.id, mode: 'egress-only', ...lease };
    const { filter, kind } = this.mode;
    return {
      id: this.id,
      filter,
      allowMatchAll: kind === 'steal-all',
      mode: kind === 'mirror' ? 'mirror' : 'steal',
      targetPort: this.ports.target,
      ...(this.#targetHost ? { targetHost: this.#targetHost } : {}),
      ...lease,
    };
  }

  /** A tunnel to the agent at `address` (one replica of it, `pod`, in a cluster). */
  #createTunnel(address: string, token: string, connect: () => Promise<Duplex>, pod?: string): AgentTunnel {
    const tunnel = new AgentTunnel({
      address,
      connect,
      token,
      client: `${userInfo().username}@${hostname()}`,
      ...(this.#leaseRef ? { namespace: this.#leaseRef.namespace } : {}),
      onConnected: async (connection) => {
        await connection.request('session.register', this.#registration());
      },
      onStream: (stream) => this.#serve(stream),
    });
    const to = pod ? `agent replica ${pod}` : 'agent';
    tunnel.on('lost', (reason) => {
      const others = this.#tunnel?.connections().length ?? 0;
      this.#reporter.warn(
        'tunnel.lost',
        `lost the tunnel to the ${to} (${reason.message}); ${others > 0 ? `${others} other replica(s) still serve session ${this.id}; ` : ''}reconnecting`,
        { ...(pod ? { pod } : {}), others },
      );
    });
    tunnel.on('restored', (attempts) =>
      this.#reporter.step(
        'tunnel.restored',
        `tunnel${pod ? ` to ${to}` : ''} restored after ${attempts} attempt(s); session ${this.id} is back`,
        { attempts, ...(pod ? { pod } : {}) },
      ),
    );
    return tunnel;
  }

  /** One tunnel per replica of the agent behind the port-forward, kept in line with its ready pods. */
  #replicaTunnels(portForward: AgentPortForward, token: string): ReplicaTunnels {
    const tunnels = new ReplicaTunnels({
      readyPods: () => portForward.readyPods(),
      tunnelTo: (pod) =>
        this.#createTunnel(`${portForward.address} (pod ${pod})`, token, () => portForward.dial(pod), pod),
      replicas: this.#options.tunnels,
    });
    tunnels.on('added', (pod) =>
      this.#reporter.step(
        'tunnel.replica-added',
        `tunnel to agent replica ${pod} up: session ${this.id} is served by ${tunnels.replicas.join(', ')}`,
        { pod, replicas: tunnels.replicas },
      ),
    );
    tunnels.on('removed', (pod) =>
      this.#reporter.step(
        'tunnel.replica-removed',
        `agent replica ${pod} is gone (deleted or not ready): its tunnel is closed`,
        { pod, replicas: tunnels.replicas },
      ),
    );
    let lastFailure = '';
    tunnels.on('failed', (error, pod) => {
      const text = `${pod ? `no tunnel to agent replica ${pod}` : 'could not list the agent replicas'} (${error.message}); trying again`;
      if (text === lastFailure) return;
      lastFailure = text;
      this.#reporter.warn('tunnel.replica-failed', text, { ...(pod ? { pod } : {}) });
    });
    return tunnels;
  }

  /**
   * Asks the agent to send a request matching the session's filter to the target from inside the
   * mesh until it comes back to the agent: then the mesh routes this session's requests, and only
   * then is the session "ready". The probe carries what the filter asks for (headers, the
   * `--baggage` member, path, a safe method); filters no such request can be built for (a path
   * regex, only unsafe methods) are not probed.
   */
  async #waitUntilRouteLive(tunnel: TunnelConnection, mode: RoutedMode, writeBegan: number): Promise<void> {
    const timeoutMs = this.#options.routeTimeout * 1000;
    const service = this.#targetService;
    if (timeoutMs === 0 || !service) return;
    const { filter } = mode;
    const probe = exampleRequest(filter, mode.probeExamples);
    if (!probe || !SAFE_METHODS.has(probe.method)) {
      this.#reporter.warn(
        'route.unverified',
        probe
          ? `the route is not verified: a probe would be an empty ${probe.method}, which reaches the real pods until the route is live; add --method GET to probe with GET`
          : 'the route is not verified: no probe request can be built for this filter (a regex on the path or on a header other than --baggage)',
      );
      return;
    }
    let last = '';
    while (Date.now() - writeBegan < timeoutMs && !this.#stopping.signal.aborted) {
      const answer = await tunnel
        .request('route.probe', {
          url: `http://${service.host}:${service.port}${probe.path}`,
          headers: probe.headers,
          method: probe.method,
          // A mirror route answers from the real pods and sends the agent a copy: that is "live".
          ...(mode.kind === 'mirror' ? { copyWaitMs: 1_000 } : {}),
        } satisfies RouteProbeParams)
        .catch((error: Error & { code?: string }) => {
          if (error.code !== 'DETOUR_UNKNOWN_METHOD') throw error;
          return undefined;
        });
      if (answer === undefined) {
        this.#reporter.warn(
          'route.unverified',
          'the route is not verified: the agent is of an older release (update the agent image)',
        );
        return;
      }
      const result = RouteProbeResult.parse(answer);
      if (result.live) {
        const ms = Date.now() - writeBegan;
        this.#reporter.step(
          'route.live',
          `the mesh routes ${formatFilter(filter)} to this session (${ms} ms after the write began)`,
          { ms },
        );
        return;
      }
      last = result.detail;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (this.#stopping.signal.aborted) return;
    this.#reporter.warn(
      'route.unverified',
      `the mesh did not route a probe to this session within ${this.#options.routeTimeout} s (last: ${last}); requests may reach the pods until it does`,
    );
  }

  /** Whether the session lives in a cluster (Lease, port-forward) rather than at a given agent. */
  get #inCluster(): boolean {
    const { agent, target } = this.#options;
    return Boolean(target) || (this.mode.kind === 'egress-only' && (!agent || agent === 'ephemeral'));
  }

  /**
   * Cluster mode: target, Lease (which admits this CLI at the agent), port-forward, tunnel, then
   * the route, so the mesh sends nothing before the session can serve it; an egress-only session
   * stops before the route. Direct mode: the tunnel.
   */
  async start(): Promise<void> {
    const ephemeral = this.#options.agent === 'ephemeral';
    let agentAddress = ephemeral ? undefined : this.#options.agent;
    let token = this.#options.token;
    if (ephemeral && !this.#inCluster)
      throw new InvalidInputError(
        'DETOUR_BAD_OPTION',
        '--agent ephemeral starts an agent in the namespace of the target: give --target deploy/NAME',
      );
    if (this.#inCluster) {
      const kc = loadKubeConfig();
      const { namespace } = this.#options;
      await requireNamespace(kc, namespace);
      const target = this.#options.target ? await this.#resolveTarget(kc) : undefined;
      const agent = await this.#agentService(kc, namespace, ephemeral);
      token ??= randomBytes(24).toString('base64url');
      this.#leaseRef = { name: leaseName(this.id), namespace };
      this.#leaseInputs = { kc, target, tokenHash: tokenSha256(token) };
      if (this.mode.kind === 'egress-only')
        this.#lease = await this.#acquireEgressLease(kc, target, tokenSha256(token));
      else
        this.#routing = await this.#acquireRouting(
          kc,
          target as ResolvedTarget,
          this.mode,
          agent,
          tokenSha256(token),
        );
      if (!agentAddress) {
        const lease = this.#heldLease;
        if (agent.ephemeral && lease) await this.#startEphemeralAgent(kc, namespace, lease);
        this.#portForward = await forwardToAgent(kc, namespace, agent.name);
        agentAddress = this.#portForward.address;
        this.#reporter.step(
          'agent.port-forward',
          `${agentAddress}: the agent's tunnel through the apiserver`,
        );
      }
    }
    if (!agentAddress || !token) {
      throw new InvalidInputError(
        'DETOUR_BAD_OPTION',
        'without --target, give the agent to connect to: --agent HOST:PORT --token TOKEN (or --target deploy/NAME to find it in the cluster)',
      );
    }
    this.#reporter.step('tunnel.connecting', `connecting to the agent at ${agentAddress}`);
    const [host = '', port = ''] = agentAddress.split(':');
    this.#tunnel = this.#portForward
      ? this.#replicaTunnels(this.#portForward, token)
      : this.#createTunnel(agentAddress, token, () => dial(host, Number(port)));
    const tunnel = await this.#tunnel.start().catch((error: Error) => {
      // Through a port-forward, the tunnel only sees a closed socket: the port-forward knows why.
      throw this.#portForward?.lastError() ?? error;
    });
    this.#proxyAddress = await this.#proxy.listen();
    if (this.#routing && this.mode.kind !== 'egress-only') {
      await this.#waitUntilRouteLive(tunnel, this.mode, await this.#routing.route());
    }
    this.#ready = true;
    const proxy = `egress proxy ${this.#proxyAddress.host}:${this.#proxyAddress.port}`;
    const agents = this.#tunnel.connections().map((connection) => connection.peerName);
    const common = {
      session: this.id,
      mode: this.mode.kind,
      proxy: this.#proxyAddress,
      agents,
      ...(this.#leaseRef ? { lease: this.#leaseRef } : {}),
    };
    if (this.mode.kind === 'egress-only') {
      this.#reporter.step(
        'session.ready',
        `session ${this.id} ready: egress-only, takes no requests; DNS and outbound calls leave from the agent (${agents.join(', ')}); ${proxy}`,
        { ...common, carriedHeaders: Object.keys(this.mode.carried) },
      );
      return;
    }
    this.#reporter.step(
      'session.ready',
      `session ${this.id} ready: ${this.describe()} on port ${this.ports.target} → 127.0.0.1:${this.ports.local} (agent ${agents.join(', ')}); ${proxy}`,
      {
        ...common,
        filter: this.mode.filter,
        targetPort: this.ports.target,
        localPort: this.ports.local,
        ...(this.#routing ? { mesh: this.#routing.adapter } : {}),
      },
    );
  }

  /** The session's files (ConfigMaps, Secrets with --env-secrets) live here while it runs. */
  get #sessionDir(): string {
    return join(homedir(), '.cache', 'detour', 'sessions', this.id);
  }

  /**
   * The target and its environment. An egress-only session needs only the workload (no Service
   * has to select it); a routed one also the Service port its requests arrive on.
   */
  async #resolveTarget(kc: KubeConfig): Promise<ResolvedWorkload | ResolvedTarget> {
    const { namespace } = this.#options;
    const spec = {
      target: this.#options.target as string,
      namespace,
      ...(this.#ports ? { port: this.#ports.target } : {}),
    };
    const where = (workload: ResolvedWorkload) =>
      `target ${workload.workload.kind} ${namespace}/${workload.workload.name}, container ${workload.container.name}`;
    let target: ResolvedWorkload | ResolvedTarget;
    if (this.mode.kind === 'egress-only') {
      target = await resolveWorkload(kc, spec);
      this.#reporter.step('target.resolved', where(target), {
        workload: target.workload,
        container: target.container.name,
      });
    } else {
      const routed = await resolveTarget(kc, spec);
      target = routed;
      this.#ports = {
        target: routed.service.targetPort,
        local: this.#ports?.local ?? routed.service.targetPort,
      };
      this.#targetHost = routed.service.host;
      this.#targetService = routed.service;
      this.#reporter.step(
        'target.resolved',
        `${where(routed)}, Service ${routed.service.name}:${routed.service.port} → port ${routed.service.targetPort}`,
        { workload: routed.workload, container: routed.container.name, service: routed.service },
      );
    }
    // Before anything is created: a missing permission leaves the cluster untouched.
    if (this.#options.envSecrets) await requireSecretAccess(kc, namespace);
    const root = join(this.#sessionDir, 'root');
    const environment = await targetEnvironment(kc, target, root, { secrets: this.#options.envSecrets });
    this.#targetEnv = environment.env;
    this.secretVariables = new Set(environment.secretVariables);
    for (const skipped of environment.skipped)
      this.#reporter.warn('env.skipped', `not copied from the pod: ${skipped}`);
    // Names only: values (Secrets among them) never reach the output.
    this.#reporter.step(
      'env.copied',
      `${Object.keys(environment.env).length} variable(s) of the target${environment.files.length > 0 ? `, ${environment.files.length} file(s) under ${root} (at their mount paths)` : ''}${environment.secretVariables.length > 0 ? `; ${environment.secretVariables.length} variable(s) from Secrets` : ''}`,
      { variables: Object.keys(environment.env), files: environment.files, root },
    );
    return target;
  }

  /**
   * The agent Service of the namespace; with --agent ephemeral and none installed, the one this
   * session will start (created once its Lease exists, so the Lease can own it).
   */
  async #agentService(
    kc: KubeConfig,
    namespace: string,
    ephemeral: boolean,
  ): Promise<ClusterRoutingOptions['agent'] & { ephemeral: boolean }> {
    const name = this.#options.agentService;
    const installed = await kc
      .makeApiClient(CoreV1Api)
      .readNamespacedService({ name, namespace })
      .catch(() => undefined);
    if (installed)
      return {
        name,
        namespace,
        port: installed.spec?.ports?.[0]?.port ?? 8080,
        selector: installed.spec?.selector ?? {},
        ephemeral: false,
      };
    if (!ephemeral)
      throw new DetourError(
        'DETOUR_AGENT_NOT_INSTALLED',
        `no Service ${name} in namespace ${namespace}: install the agent with \`detour install -n ${namespace}\` (an admin), or start this session with --agent ephemeral`,
      );
    return { ...ephemeralAgentService(this.id), namespace, ephemeral: true };
  }

  async #startEphemeralAgent(
    kc: KubeConfig,
    namespace: string,
    lease: LeaseRef,
    why = `no agent installed in ${namespace}: starting one for this session (--agent ephemeral)`,
  ): Promise<void> {
    this.#ephemeral = new EphemeralAgent(
      kubeClient(kc),
      ephemeralAgentObjects({
        namespace,
        sessionId: this.id,
        image: this.#options.agentImage ?? agentImage,
        lease,
      }),
      this.#reporter,
    );
    this.#reporter.step('agent.ephemeral', why);
    await this.#ephemeral.start(60_000, this.#stopping.signal);
  }

  /** An egress-only session's Lease: it admits the tunnel and shows who is connected; nothing is routed. */
  async #acquireEgressLease(
    kc: KubeConfig,
    target: ResolvedWorkload | undefined,
    tokenHash: string,
  ): Promise<SessionLease> {
    return SessionLease.create(
      kubeClient(kc),
      buildEgressOnlyLease(
        {
          sessionId: this.id,
          holder: `${userInfo().username}@${hostname()}`,
          lease: this.#leaseRef as { name: string; namespace: string },
          ...(target ? { workload: `${target.workload.kind}/${target.workload.name}` } : {}),
        },
        new Date(),
        { durationSeconds: this.#options.leaseSeconds, tokenSha256: tokenHash },
      ),
      this.#reporter,
      (interruption) => this.#leaseInterrupted(interruption),
    );
  }

  async #acquireRouting(
    kc: KubeConfig,
    target: ResolvedTarget,
    mode: RoutedMode,
    agent: ClusterRoutingOptions['agent'],
    tokenHash: string,
  ): Promise<ClusterRouting> {
    const routing = new ClusterRouting({
      kc,
      target,
      sessionId: this.id,
      holder: `${userInfo().username}@${hostname()}`,
      filter: mode.filter,
      mode: mode.kind,
      agent: {
        name: agent.name,
        namespace: agent.namespace,
        port: agent.port,
        selector: agent.selector ?? {},
      },
      ...(this.#options.mesh ? { mesh: this.#options.mesh } : {}),
      leaseSeconds: this.#options.leaseSeconds,
      reporter: this.#reporter,
      onLeaseInterrupted: (interruption) => this.#leaseInterrupted(interruption),
    });
    await routing.acquireLease(tokenHash);
    return routing;
  }

  #leaseInterrupted(interruption: LeaseInterruption): void {
    if (!this.#ready || this.#stopping.signal.aborted) return;
    if (this.#resuming) {
      // A resume under way sees a Lease that went meanwhile at its next attempt; one that had
      // finished its attempts hears of it here once it is done.
      this.#interruptedMeanwhile = interruption;
      return;
    }
    this.#resuming = this.#resume(interruption).finally(() => {
      this.#resuming = undefined;
      const next = this.#interruptedMeanwhile;
      this.#interruptedMeanwhile = undefined;
      if (next) this.#leaseInterrupted(next);
    });
  }

  /** The session's Lease as held now: undefined once it was found gone, until it is made again. */
  get #heldLease(): LeaseRef | undefined {
    return this.#routing?.lease ?? this.#lease?.ref;
  }

  /**
   * The session back after its Lease went unrenewed past its expiry (a laptop asleep, a network
   * gone): a Lease found gone is created again (the agent admits the tunnels again, which
   * reconnect at once), and a routed session's route is written again and probed, since a janitor
   * may have reverted it; an ephemeral agent, removed with the Lease it was owned by, is started
   * again, owned by the new one. Trouble reaching the apiserver is retried; anything else (the
   * filter taken by someone else meanwhile, a permission) ends the session with DETOUR_SESSION_LOST.
   */
  async #resume({ gone, sinceRenewalMs }: LeaseInterruption): Promise<void> {
    const lease = `${this.#leaseRef?.namespace}/${this.#leaseRef?.name}`;
    const away = `${Math.round(sinceRenewalMs / 1000)} s after its last renewal`;
    const routed = this.mode.kind === 'egress-only' ? undefined : this.mode;
    const consequence = routed ? 'its route was reverted' : 'the agent admits none of its tunnels';
    const what = gone
      ? `the session's Lease ${lease} was ended by the agent or a janitor (found ${away}: this machine asleep or offline?), so ${consequence}`
      : `the session's Lease ${lease} was renewed ${away}, past its expiry`;
    this.#reporter.warn('lease.interrupted', `${what}; bringing session ${this.id} back`, {
      gone,
      sinceRenewalSeconds: Math.round(sinceRenewalMs / 1000),
    });
    // Whether the ephemeral agent (if any) is owned by the Lease held now.
    let agentBack = true;
    let newLease = false;
    let lastProblem = '';
    for (let delayMs = 1_000; !this.#stopping.signal.aborted; delayMs = Math.min(delayMs * 2, 10_000)) {
      try {
        if (!this.#heldLease) {
          // An ephemeral agent was owned by the ended Lease: the garbage collector removes it.
          if (this.#ephemeral) {
            await this.#ephemeral.stop();
            await this.#ephemeral.waitGone(60_000, this.#stopping.signal);
            if (this.#stopping.signal.aborted) return;
            agentBack = false;
          }
          await this.#leaseAgain();
          newLease = true;
        }
        if (!agentBack) {
          const lease = this.#heldLease;
          const kc = this.#leaseInputs?.kc;
          if (!lease || !kc) throw new Error('an ephemeral agent to start again without its Lease');
          await this.#startEphemeralAgent(
            kc,
            lease.namespace,
            lease,
            'the ephemeral agent went with the ended Lease: starting it again, owned by the new one',
          );
          agentBack = true;
        }
        this.#tunnel?.retryNow();
        const tunnel = await this.#tunnelUp();
        // Replicas whose tunnel outlived the Lease record themselves on the new one.
        if (newLease)
          for (const connection of this.#tunnel?.connections() ?? [])
            await connection.request('session.register', this.#registration());
        if (this.#routing && routed)
          await this.#waitUntilRouteLive(tunnel, routed, await this.#routing.route());
        this.#reporter.step(
          'session.resumed',
          `session ${this.id} is back${newLease ? ' with a new Lease' : ''}${routed ? `: ${this.describe()} reaches this machine again` : ''}`,
          { session: this.id, lease: this.#heldLease },
        );
        return;
      } catch (error) {
        const cause = error as Error;
        if (this.#stopping.signal.aborted) return;
        if (cause instanceof DetourError) {
          this.#failure.resolve(
            new DetourError(
              'DETOUR_SESSION_LOST',
              `session ${this.id} cannot come back: ${what}, and ${cause.message}`,
              { cause },
            ),
          );
          return;
        }
        if (cause.message !== lastProblem)
          this.#reporter.warn(
            'session.resume-retry',
            `could not bring session ${this.id} back yet (${cause.message}); retrying`,
          );
        lastProblem = cause.message;
        await sleep(delayMs, undefined, { signal: this.#stopping.signal }).catch(() => {});
      }
    }
  }

  /** A new Lease for a session whose Lease is gone (the same token: the tunnels are admitted again). */
  async #leaseAgain(): Promise<void> {
    const inputs = this.#leaseInputs;
    if (!inputs) throw new Error('a Lease to renew without a cluster session');
    if (this.#routing) await this.#routing.reacquireLease(inputs.tokenHash);
    else this.#lease = await this.#acquireEgressLease(inputs.kc, inputs.target, inputs.tokenHash);
  }

  /** A tunnel that is up, waited for while the tunnels reconnect. */
  async #tunnelUp(timeoutMs = 30_000): Promise<TunnelConnection> {
    const began = Date.now();
    for (; Date.now() - began < timeoutMs && !this.#stopping.signal.aborted; await sleep(100)) {
      const current = this.#tunnel?.current;
      if (current) return current;
    }
    throw new Error(`no tunnel to the agent came up within ${timeoutMs / 1000} s`);
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    // A resume under way ends at its next step; what it created is then removed below.
    await this.#resuming;
    const setUp = [this.#routing, this.#lease, this.#tunnel, this.#ephemeral].some(Boolean);
    // The route goes first, so the mesh stops sending requests before the session disappears.
    await this.#routing?.stop();
    await this.#lease?.delete();
    await Promise.all(
      (this.#tunnel?.connections() ?? []).map((tunnel) =>
        tunnel.request('session.unregister', { id: this.id }).catch(() => {}),
      ),
    );
    this.#tunnel?.stop();
    await this.#portForward?.close();
    await this.#ephemeral?.stop();
    this.#forwarder.close();
    await this.#proxy.close();
    // The copied files (Secrets among them with --env-secrets) do not outlive the session.
    rmSync(this.#sessionDir, { recursive: true, force: true });
    if (this.#ready) this.#reporter.step('session.ended', `session ${this.id} ended`, { session: this.id });
    else if (setUp)
      this.#reporter.step(
        'session.undone',
        `session ${this.id} did not start; what its start had set up is undone`,
        { session: this.id },
      );
  }
}
