import { join } from 'node:path';
import type { OrdersFixture } from './cluster-fixtures.ts';
import { repoRoot } from './detour.ts';
import { freePort } from './ports.ts';
import { type ProcessSet, run } from './processes.ts';
import { waitFor } from './wait.ts';

const agentMain = join(repoRoot, 'agent', 'src', 'main.ts');
const cliMain = join(repoRoot, 'cli', 'src', 'main.ts');

/** A local app that answers with what a test wants to see: who answered, an env var, the header. */
export const echoAppSource = `require('node:http').createServer((q, s) => s.end(JSON.stringify({ app: 'local', payments: process.env.PAYMENTS_URL, dev: q.headers['x-dev'] }))).listen(Number(process.argv[1]), '127.0.0.1')`;

export interface LoopbackAgent {
  tunnel: string;
  inboundUrl: string;
  cli: string;
  log: () => string;
}

/** The agent as a process on loopback: the stand-in for a pod reached through port-forward. */
export async function loopbackAgent(
  processes: ProcessSet,
  env: NodeJS.ProcessEnv = {},
): Promise<LoopbackAgent> {
  const agent = processes.start('agent', [process.execPath, agentMain], {
    env: {
      ...process.env,
      DETOUR_TUNNEL_LISTEN: '127.0.0.1:0',
      DETOUR_INBOUND_LISTEN: '127.0.0.1:0',
      DETOUR_ADMIN_LISTEN: '127.0.0.1:0',
      DETOUR_TOKENS: 'tok',
      ...env,
    },
  });
  const [, tunnel = '', inbound = ''] = await waitFor(
    { what: 'the agent to start', timeoutMs: 15_000, detail: () => agent.tail() },
    () => /"tunnel":"(127\.0\.0\.1:\d+)","inbound":"(127\.0\.0\.1:\d+)"/.exec(agent.stderr) ?? undefined,
  );
  return { tunnel, inboundUrl: `http://${inbound}`, cli: cliMain, log: () => agent.stderr };
}

/** argv of `detour exec --target deploy/orders` against the fixture, running the echo app by default. */
export async function sessionArgs(spec: {
  fixture: OrdersFixture;
  agent: LoopbackAgent;
  session: string;
  leaseSeconds?: number;
  command?: string[];
  /** The tunnel token; null: none, so the CLI makes one and its Lease admits it. */
  token?: string | null;
}): Promise<string[]> {
  const localPort = await freePort();
  return [
    process.execPath,
    cliMain,
    'exec',
    '--target',
    'deploy/orders',
    '--namespace',
    spec.fixture.namespace,
    '--agent',
    spec.agent.tunnel,
    ...(spec.token === null ? [] : ['--token', spec.token ?? 'tok']),
    '--header',
    'x-dev=dev-a',
    '--port',
    `8080:${localPort}`,
    '--session',
    spec.session,
    '--lease-seconds',
    String(spec.leaseSeconds ?? 30),
    // Tier 1 has no data plane: there is no mesh to carry a route probe.
    '--route-timeout',
    '0',
    '--json',
    '--',
    ...(spec.command ?? [process.execPath, '-e', echoAppSource, String(localPort)]),
  ];
}

/** Runs `detour clean -n NS` until it reports `session` reverted because its Lease expired. */
export async function cleanUntilExpired(
  agent: LoopbackAgent,
  namespace: string,
  session: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  let lastClean = '';
  await waitFor(
    { what: `detour clean to revert ${session}`, timeoutMs: 30_000, detail: () => lastClean },
    async () => {
      lastClean = (await run([process.execPath, agent.cli, 'clean', '-n', namespace, '--json'], { env }))
        .stderr;
      return new RegExp(`reverted session ${session} .*its lease expired`).test(lastClean);
    },
  );
}
