import { fileURLToPath } from 'node:url';
import { addresses, createTopology, type Role, type Topology } from './netns.ts';
import { type ManagedProcess, ProcessSet, type RunResult, run } from './processes.ts';
import { waitFor } from './wait.ts';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const agentMain = fileURLToPath(new URL('../../agent/src/main.ts', import.meta.url));
const cliMain = fileURLToPath(new URL('../../cli/src/main.ts', import.meta.url));
export const supportDir = fileURLToPath(new URL('./', import.meta.url));

export const ports = {
  tunnel: 7700,
  inbound: 8080,
  admin: 9090,
  /** The "real pods" of the target service, in the cluster namespace. */
  remoteApp: 8080,
  /** A service the local app calls by its cluster name. */
  payments: 9000,
  /** A gRPC service the local app calls by its cluster name. */
  paymentsGrpc: 9001,
  localApp: 3000,
  localGrpc: 50051,
} as const;

export const token = 'test-token-1';
export const inboundUrl = `http://${addresses.pod}:${ports.inbound}`;
export const paymentsName = 'payments.staging.svc.cluster.local';

export interface SessionSpec {
  name: string;
  headers: string[];
  port: string;
  token?: string;
  /** The command `detour exec` runs; without it `detour up` runs. */
  command?: string[];
  extraFlags?: string[];
  /** Wait for session.ready (default true). */
  waitReady?: boolean;
  /** Progress as JSON lines on stdout (default true); false gives the human text on stderr. */
  json?: boolean;
}

/**
 * One test file's world: the three namespaces and every process started in them, with helpers to
 * start the agent, apps and CLI sessions and to run clients. `close()` stops the processes, by pid,
 * and removes the namespaces.
 */
export class Rig {
  readonly topology: Topology;
  readonly processes = new ProcessSet();
  agent: ManagedProcess | undefined;
  readonly #onExit = () => this.processes.killAllNow();

  constructor(tag: string) {
    this.topology = createTopology(tag);
    process.once('exit', this.#onExit);
    // The pod resolves cluster names (its own hosts file); the laptop resolves none of them.
    this.topology.writeHosts('pod', { [addresses.cluster]: [paymentsName, 'payments'] });
  }

  /** argv running a Node script of the repo inside a namespace. */
  node(role: Role, script: string, args: readonly string[] = []): string[] {
    return this.topology.exec(role, [process.execPath, script, ...args]);
  }

  start(role: Role, name: string, argv: readonly string[], env?: NodeJS.ProcessEnv): ManagedProcess {
    return this.processes.start(name, this.topology.exec(role, argv), { cwd: repoRoot, env });
  }

  agentEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      ...process.env,
      DETOUR_TUNNEL_LISTEN: `${addresses.pod}:${ports.tunnel}`,
      DETOUR_INBOUND_LISTEN: `0.0.0.0:${ports.inbound}`,
      DETOUR_ADMIN_LISTEN: `${addresses.pod}:${ports.admin}`,
      DETOUR_UPSTREAM: `${addresses.cluster}:${ports.remoteApp}`,
      DETOUR_TOKENS: `${token},other-token`,
      DETOUR_HEARTBEAT_MS: '1000',
      DETOUR_AGENT_NAME: 'test-agent',
      ...extra,
    };
  }

  /** Starts the agent in the pod namespace and waits until /readyz answers. */
  async startAgent(extra: Record<string, string> = {}): Promise<ManagedProcess> {
    const agent = this.start('pod', 'agent', [process.execPath, agentMain], this.agentEnv(extra));
    this.agent = agent;
    await agent.waitForLine('stderr', (line) => line.event === 'agent.ready', 'agent.ready log line', 20_000);
    await waitFor(
      { what: 'the agent /readyz to answer 200', timeoutMs: 10_000, detail: () => agent.tail() },
      async () =>
        (await this.curl('pod', ['-sf', `http://${addresses.pod}:${ports.admin}/readyz`])).code === 0,
    );
    return agent;
  }

  /** Starts an app from tests/support/apps and waits until it listens. */
  async startApp(
    role: Role,
    name: string,
    options: { port: number; host?: string; kind?: 'http' | 'grpc' },
  ): Promise<ManagedProcess> {
    const script = `${supportDir}apps/${options.kind === 'grpc' ? 'grpc-app.ts' : 'http-app.ts'}`;
    const app = this.start(role, `app ${name}`, [
      process.execPath,
      script,
      '--name',
      name,
      '--port',
      String(options.port),
      ...(options.host ? ['--host', options.host] : []),
    ]);
    await app.waitForLine('stdout', (line) => line.event === 'app.listening', `app ${name} listening`);
    return app;
  }

  /** argv of the detour CLI. */
  cli(args: readonly string[]): string[] {
    return [process.execPath, cliMain, ...args];
  }

  sessionArgs(spec: SessionSpec): string[] {
    return [
      spec.command ? 'exec' : 'up',
      '--agent',
      `${addresses.pod}:${ports.tunnel}`,
      '--token',
      spec.token ?? token,
      ...spec.headers.flatMap((header) => ['--header', header]),
      '--port',
      spec.port,
      '--session',
      spec.name,
      ...(spec.json === false ? [] : ['--json']),
      ...(spec.extraFlags ?? []),
      ...(spec.command ? ['--', ...spec.command] : []),
    ];
  }

  /** Starts a CLI session in the laptop namespace (with --json) and waits for session.ready. */
  async startSession(spec: SessionSpec): Promise<ManagedProcess> {
    const cli = this.start('laptop', `detour ${spec.name}`, this.cli(this.sessionArgs(spec)));
    if (spec.waitReady !== false)
      await cli.waitForLine('stderr', (line) => line.event === 'session.ready', `session ${spec.name} ready`);
    return cli;
  }

  /**
   * Starts the developer's "local" app (tests/support/apps/http-app.ts named `local` on
   * ports.localApp) under `detour exec`, routing `x-dev: <dev>` from the inbound port to it, and
   * waits until a request with that header from the cluster is answered by it.
   */
  async startLocalAppSession(name: string, dev: string, readyTimeoutMs = 10_000): Promise<ManagedProcess> {
    const cli = await this.startSession({
      name,
      headers: [`x-dev=${dev}`],
      port: `${ports.inbound}:${ports.localApp}`,
      command: [
        process.execPath,
        `${supportDir}apps/http-app.ts`,
        '--name',
        'local',
        '--port',
        String(ports.localApp),
      ],
    });
    await waitFor(
      { what: `the local app to answer through session ${name}`, timeoutMs: readyTimeoutMs },
      async () => {
        const result = await this.curl('cluster', ['-sf', ...inbound('/ready', dev)]);
        return result.code === 0 && JSON.parse(result.stdout).app === 'local';
      },
    );
    return cli;
  }

  /** Runs curl in a namespace (bounded: curl's own --max-time plus a hard kill). */
  curl(role: Role, args: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
    return run(
      this.topology.exec(role, ['curl', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args]),
      {
        timeoutMs: timeoutMs + 5_000,
        what: `curl ${args.join(' ')} (in ${role})`,
      },
    );
  }

  /** Runs a shell pipeline in a namespace. */
  sh(role: Role, script: string, timeoutMs = 60_000): Promise<RunResult> {
    return run(this.topology.exec(role, ['bash', '-o', 'pipefail', '-c', script]), {
      timeoutMs,
      what: `${script} (in ${role})`,
    });
  }

  /** Runs a client script from tests/support/clients and parses its one JSON line. */
  async client(role: Role, script: string, args: readonly string[], timeoutMs = 40_000) {
    const result = await run(this.node(role, `${supportDir}clients/${script}`, args), {
      timeoutMs,
      cwd: repoRoot,
      what: `${script} ${args.join(' ')}`,
    });
    const line = result.stdout.trim().split('\n').at(-1) ?? '';
    try {
      return { ...result, json: JSON.parse(line) as Record<string, unknown> };
    } catch {
      throw new Error(
        `${script} printed no JSON result (exit ${result.code}):\n${result.stdout}\n${result.stderr}`,
      );
    }
  }

  /** The agent's Prometheus metrics as name{labels} → value. */
  async metrics(): Promise<Map<string, number>> {
    const result = await this.curl('pod', ['-sf', `http://${addresses.pod}:${ports.admin}/metrics`]);
    if (result.code !== 0)
      throw new Error(`GET /metrics failed (curl exit ${result.code}): ${result.stderr}`);
    const values = new Map<string, number>();
    for (const line of result.stdout.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const at = line.lastIndexOf(' ');
      values.set(line.slice(0, at), Number(line.slice(at + 1)));
    }
    return values;
  }

  async close(): Promise<void> {
    try {
      await this.processes.stopAll();
    } finally {
      process.off('exit', this.#onExit);
      this.topology.remove();
    }
  }
}

/** curl arguments for a request to the agent's inbound port, optionally with the routing header. */
export function inbound(path: string, devHeader?: string): string[] {
  return [...(devHeader ? ['-H', `x-dev: ${devHeader}`] : []), `${inboundUrl}${path}`];
}
