import { randomBytes } from 'node:crypto';
import { homedir, hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { layerEnv } from '@detour/layer';
import { kubeClient, type LeaseRef, leaseName, tokenSha256 } from '@detour/mesh-adapters';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { EgressPolicy } from '@detour/router/egress/egress-policy';
import { TunnelDialer } from '@detour/router/egress/tunnel-dialer';
import { DetourError, InvalidInputError } from '@detour/router/errors';
import { LocalAppForwarder } from '@detour/router/http/serve-from-tunnel';
import {
  filterFromExpressions,
  formatFilter,
  parseHeaderExpression,
  type RouteFilter,
  validateFilter,
} from '@detour/router/match/index';
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
import { ephemeralAgentObjects } from '../install/agent-manifests.ts';
import { type AgentPortForward, forwardToAgent } from '../kube/agent-port-forward.ts';
import { loadKubeConfig } from '../kube/kubeconfig.ts';
import { type ResolvedTarget, resolveTarget } from '../kube/target.ts';
import { targetEnvironment } from '../kube/target-env.ts';
import type { SessionOptions } from '../options.ts';
import type { Reporter } from '../reporter.ts';
import { versionInfo } from '../version.ts';
import { AgentTunnel } from './agent-tunnel.ts';
import { ClusterRouting, type ClusterRoutingOptions } from './cluster-routing.ts';
import { EphemeralAgent } from './ephemeral-agent.ts';
import { sessionProcessEnv } from './process-env.ts';

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

export function filterFromOptions(options: SessionOptions): RouteFilter {
  const expressions = [
    ...options.header.map((expr) => parseHeaderExpression(expr)),
    ...options.withoutHeader.map((expr) => parseHeaderExpression(expr, { negate: true })),
  ];
  if (expressions.length === 0 && !options.stealAll) {
    throw new InvalidInputError(
      'DETOUR_NO_FILTER',
      'no filter given: pass --header x-dev=<your-name> to receive only your requests, or --steal-all to take every request of the target',
    );
  }
  return validateFilter(filterFromExpressions(expressions), 'filter', { allowMatchAll: options.stealAll });
}

/** Headers a probe can carry to match `filter`, or undefined when it has conditions a probe cannot meet. */
function probeHeaders(filter: RouteFilter): Record<string, string> | undefined {
  if (filter.uri || filter.method) return undefined;
  const headers: Record<string, string> = {};
  for (const [name, match] of Object.entries(filter.headers ?? {})) {
    if ('exact' in match) headers[name] = match.exact;
    else if (Object.keys(match).length === 0) headers[name] = 'detour-probe';
    else return undefined;
  }
  return headers;
}

/** The header values a request must carry exactly to match: what `--carry-header` sends. */
function exactHeaders(filter: RouteFilter): Record<string, string> {
  return Object.fromEntries(
    Object.entries(filter.headers ?? {}).flatMap(([name, match]) =>
      'exact' in match ? [[name, match.exact]] : [],
    ),
  );
}

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
 * inbound requests served to the local app, the loopback egress proxy for the app's calls and,
 * with `--target`, the route in the cluster's mesh and the target's environment.
 */
export class LocalSession {
  readonly id: string;
  readonly filter: RouteFilter;
  readonly #options: SessionOptions;
  readonly #reporter: Reporter;
  #tunnel: AgentTunnel | undefined;
  #portForward: AgentPortForward | undefined;
  readonly #proxy: EgressProxy;
  readonly #forwarder: LocalAppForwarder;
  #ports: PortMapping | undefined;
  #routing: ClusterRouting | undefined;
  #targetEnv: Record<string, string> = {};
  #targetHost: string | undefined;
  #targetService: { host: string; port: number } | undefined;
  #leaseRef: { name: string; namespace: string } | undefined;
  #proxyAddress: { host: string; port: number } | undefined;
  #ephemeral: EphemeralAgent | undefined;

  constructor(options: SessionOptions, reporter: Reporter) {
    this.#options = options;
    this.#reporter = reporter;
    this.filter = filterFromOptions(options);
    if (!options.target && !options.port) {
      throw new InvalidInputError(
        'DETOUR_BAD_OPTION',
        '--port is required without --target: the port your local app listens on, e.g. --port 8080',
      );
    }
    if (options.port) this.#ports = parsePortMapping(options.port);
    this.id = options.session ?? defaultSessionId();
    this.#forwarder = new LocalAppForwarder({ localPort: () => this.ports.local });
    const policy = new EgressPolicy({ include: options.egressInclude, exclude: options.egressExclude });
    this.#proxy = new EgressProxy({
      port: options.proxyPort,
      router: new EgressRouter({
        policy,
        remote: new TunnelDialer(() => this.#tunnel?.current),
        local: new DirectDialer(),
      }),
    });
  }

  get ports(): PortMapping {
    if (!this.#ports) throw new Error('the target port is known once the target is resolved');
    return this.#ports;
  }

  get agentAddress(): string {
    return this.#portForward?.address ?? this.#options.agent ?? '';
  }

  #serve(stream: TunnelStream): void {
    if (stream.open.kind !== 'http') {
      stream.reset(TunnelCode.refused, `the CLI does not accept ${stream.open.kind} streams`);
      return;
    }
    this.#forwarder.serve(stream);
  }

  /** The environment that puts a local process in this session (call after `start`). */
  processEnv(): Record<string, string> {
    if (!this.#proxyAddress) throw new Error('the session has not started');
    return {
      ...this.#targetEnv,
      ...sessionProcessEnv({
        proxyEnv: this.#proxy.env(),
        proxy: this.#proxyAddress,
        // The session's own header names, and W3C baggage, ride along on the app's outbound calls.
        routingHeaders: [...new Set([...Object.keys(this.filter.headers ?? {}), 'baggage'])],
        cacheDir: join(homedir(), '.cache', 'detour'),
      }),
      ...(this.#options.carryHeader
        ? { [layerEnv.defaultHeaders]: JSON.stringify(exactHeaders(this.filter)) }
        : {}),
    };
  }

  #createTunnel(address: string, token: string): AgentTunnel {
    const [host = '', port = ''] = address.split(':');
    const options = this.#options;
    const tunnel = new AgentTunnel({
      host,
      port: Number(port),
      token,
      client: `${userInfo().username}@${hostname()}`,
      ...(this.#leaseRef ? { namespace: this.#leaseRef.namespace } : {}),
      onConnected: async (connection) => {
        await connection.request('session.register', {
          id: this.id,
          filter: this.filter,
          allowMatchAll: options.stealAll,
          mode: options.mirror ? 'mirror' : 'steal',
          targetPort: this.ports.target,
          ...(this.#targetHost ? { targetHost: this.#targetHost } : {}),
          ...(this.#leaseRef ? { lease: this.#leaseRef } : {}),
        });
      },
      onStream: (stream) => this.#serve(stream),
    });
    tunnel.on('lost', (reason) =>
      this.#reporter.warn('tunnel.lost', `lost the tunnel to the agent (${reason.message}); reconnecting`),
    );
    tunnel.on('restored', (attempts) =>
      this.#reporter.step(
        'tunnel.restored',
        `tunnel restored after ${attempts} attempt(s); session ${this.id} is back`,
        {
          attempts,
        },
      ),
    );
    return tunnel;
  }

  /**
   * Asks the agent to send a request matching the session's filter to the target from inside the
   * mesh until it comes back to the agent: then the mesh routes this session's requests, and only
   * then is the session "ready". Filters no request can be built for (regex, prefix, uri, method)
   * are not probed.
   */
  async #waitUntilRouteLive(tunnel: TunnelConnection, writeBegan: number): Promise<void> {
    const timeoutMs = this.#options.routeTimeout * 1000;
    const service = this.#targetService;
    if (timeoutMs === 0 || !service) return;
    const headers = probeHeaders(this.filter);
    if (!headers) {
      this.#reporter.warn(
        'route.unverified',
        'the route is not verified: only exact and presence header filters can be probed',
      );
      return;
    }
    let last = '';
    while (Date.now() - writeBegan < timeoutMs) {
      const answer = await tunnel
        .request('route.probe', {
          url: `http://${service.host}:${service.port}/`,
          headers,
          // A mirror route answers from the real pods and sends the agent a copy: that is "live".
          ...(this.#options.mirror ? { copyWaitMs: 1_000 } : {}),
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
          `the mesh routes ${formatFilter(this.filter)} to this session (${ms} ms after the write began)`,
          { ms },
        );
        return;
      }
      last = result.detail;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    this.#reporter.warn(
      'route.unverified',
      `the mesh did not route a probe to this session within ${this.#options.routeTimeout} s (last: ${last}); requests may reach the pods until it does`,
    );
  }

  /**
   * Cluster mode: target, Lease (which admits this CLI at the agent), port-forward, tunnel, then
   * the route, so the mesh sends nothing before the session can serve it. Direct mode: the tunnel.
   */
  async start(): Promise<void> {
    const mode = this.#options.mirror ? 'mirror' : 'steal';
    const ephemeral = this.#options.agent === 'ephemeral';
    let agentAddress = ephemeral ? undefined : this.#options.agent;
    let token = this.#options.token;
    if (ephemeral && !this.#options.target)
      throw new InvalidInputError(
        'DETOUR_BAD_OPTION',
        '--agent ephemeral starts an agent in the namespace of the target: give --target deploy/NAME',
      );
    if (this.#options.target) {
      const { kc, target } = await this.#resolveTarget();
      token ??= randomBytes(24).toString('base64url');
      const agent = await this.#agentService(kc, target.namespace, ephemeral);
      this.#routing = await this.#acquireLease(kc, target, agent, tokenSha256(token));
      if (!agentAddress) {
        if (agent.ephemeral) await this.#startEphemeralAgent(kc, target.namespace, this.#routing);
        this.#portForward = await forwardToAgent(kc, target.namespace, agent.name);
        agentAddress = this.#portForward.address;
        this.#reporter.step(
          'agent.port-forward',
          `port-forwarding ${agentAddress} to the agent's tunnel through the apiserver`,
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
    this.#tunnel = this.#createTunnel(agentAddress, token);
    const tunnel = await this.#tunnel.start().catch((error: Error) => {
      // Through a port-forward, the tunnel only sees a closed socket: the port-forward knows why.
      throw this.#portForward?.lastError() ?? error;
    });
    this.#proxyAddress = await this.#proxy.listen();
    if (this.#routing) {
      await this.#waitUntilRouteLive(tunnel, await this.#routing.route());
    }
    this.#reporter.step(
      'session.ready',
      `session ${this.id} ready: ${mode} ${formatFilter(this.filter) || 'all requests'} on port ${this.ports.target} → 127.0.0.1:${this.ports.local} (agent ${tunnel.peerName}); egress proxy ${this.#proxyAddress.host}:${this.#proxyAddress.port}`,
      {
        session: this.id,
        mode,
        filter: this.filter,
        targetPort: this.ports.target,
        localPort: this.ports.local,
        proxy: this.#proxyAddress,
        ...(this.#routing ? { mesh: this.#routing.adapter } : {}),
      },
    );
  }

  async #resolveTarget(): Promise<{ kc: KubeConfig; target: ResolvedTarget }> {
    const kc = loadKubeConfig();
    const { namespace } = this.#options;
    const target = await resolveTarget(kc, {
      target: this.#options.target as string,
      namespace,
      ...(this.#ports ? { port: this.#ports.target } : {}),
    });
    this.#ports = {
      target: target.service.targetPort,
      local: this.#ports?.local ?? target.service.targetPort,
    };
    this.#targetHost = target.service.host;
    this.#targetService = target.service;
    this.#leaseRef = { name: leaseName(this.id), namespace };
    this.#reporter.step(
      'target.resolved',
      `target ${target.workload.kind} ${namespace}/${target.workload.name}, container ${target.container.name}, Service ${target.service.name}:${target.service.port} → port ${target.service.targetPort}`,
      { workload: target.workload, container: target.container.name, service: target.service },
    );
    const environment = await targetEnvironment(
      kc,
      target,
      join(homedir(), '.cache', 'detour', 'sessions', this.id, 'root'),
    );
    this.#targetEnv = environment.env;
    for (const skipped of environment.skipped)
      this.#reporter.warn('env.skipped', `not copied from the pod: ${skipped}`);
    return { kc, target };
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
    const service = this.#ephemeralObjects(namespace, { name: 'pending', namespace }).find(
      (o) => o.kind === 'Service',
    ) as {
      metadata: { name: string };
      spec: { ports: Array<{ port: number }>; selector: Record<string, string> };
    };
    return {
      name: service.metadata.name,
      namespace,
      port: service.spec.ports[0]?.port ?? 8080,
      selector: service.spec.selector,
      ephemeral: true,
    };
  }

  #ephemeralObjects(namespace: string, lease: LeaseRef) {
    return ephemeralAgentObjects({
      namespace,
      sessionId: this.id,
      image: this.#options.agentImage ?? versionInfo().agentImage,
      lease: { uid: 'pending', ...lease },
    });
  }

  async #startEphemeralAgent(kc: KubeConfig, namespace: string, routing: ClusterRouting): Promise<void> {
    const lease = routing.lease;
    if (!lease) throw new Error('the ephemeral agent needs the session Lease');
    this.#ephemeral = new EphemeralAgent(
      kubeClient(kc),
      this.#ephemeralObjects(namespace, lease),
      this.#reporter,
    );
    this.#reporter.step(
      'agent.ephemeral',
      `no agent installed in ${namespace}: starting one for this session (--agent ephemeral)`,
    );
    await this.#ephemeral.start(60_000);
  }

  async #acquireLease(
    kc: KubeConfig,
    target: ResolvedTarget,
    agent: ClusterRoutingOptions['agent'],
    tokenHash: string,
  ): Promise<ClusterRouting> {
    const routing = new ClusterRouting({
      kc,
      target,
      sessionId: this.id,
      holder: `${userInfo().username}@${hostname()}`,
      filter: this.filter,
      mode: this.#options.stealAll ? 'steal-all' : this.#options.mirror ? 'mirror' : 'steal',
      agent: {
        name: agent.name,
        namespace: agent.namespace,
        port: agent.port,
        selector: agent.selector ?? {},
      },
      ...(this.#options.mesh ? { mesh: this.#options.mesh } : {}),
      leaseSeconds: this.#options.leaseSeconds,
      reporter: this.#reporter,
    });
    await routing.acquireLease(tokenHash);
    return routing;
  }

  async stop(): Promise<void> {
    // The route goes first, so the mesh stops sending requests before the session disappears.
    await this.#routing?.stop();
    const tunnel = this.#tunnel?.current;
    if (tunnel) await tunnel.request('session.unregister', { id: this.id }).catch(() => {});
    this.#tunnel?.stop();
    await this.#portForward?.close();
    await this.#ephemeral?.stop();
    this.#forwarder.close();
    await this.#proxy.close();
    this.#reporter.step('session.ended', `session ${this.id} ended`, { session: this.id });
  }
}
