// Shared by the end-to-end suites and the cluster demo: the mesh on the local cluster (tier 3 on tier
// 2), the sample system in `staging`, requests from the caller pod, VirtualService reads and writes as
// the developer, and `detour exec` against the cluster.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kubeconfigPath, kubectl } from '../cluster/cluster.ts';
import { ClusterError } from '../cluster/errors.ts';
import { importIntoNode, meshBuild, meshImages, meshRunning, meshUp } from '../cluster/mesh.ts';
import { binaryPath, repoRoot } from '../cluster/paths.ts';
import { type CallerAnswer, callerGet, deploySample, sampleNamespace } from '../cluster/sample/sample.ts';
import { waitFor } from '../cluster/wait.ts';
import { ManagedProcess, type RunResult, run } from '../support/processes.ts';

export type { CallerAnswer };
export { callerGet, sampleNamespace };

/** A mesh identity as the server-side sidecar reports it (x-forwarded-client-cert URI). */
export function spiffe(serviceAccount: string, namespace = sampleNamespace): string {
  return `spiffe://cluster.local/ns/${namespace}/sa/${serviceAccount}`;
}

/**
 * Makes sure the mesh runs and the sample system is deployed and answering, with the sample and
 * agent images built from this checkout (~2 s; Istio is built only when missing). Never stops
 * anything: the mesh takes ~1 min to come up with its pods, so suites share it
 * (node tests/cluster/mesh.ts down stops it).
 */
export async function useSample(log: (line: string) => void = () => {}): Promise<void> {
  await meshBuild(log);
  if (!(await meshRunning())) await meshUp({ log, build: false });
  else await importIntoNode([meshImages.sample, meshImages.agent]);
  await deploySample({ log });
  // Pods are Ready once their sidecar is; the first requests can still meet a cold route table.
  await waitFor(
    'frontend -> orders -> payments to answer through the sidecars',
    async () => {
      const answer = await callerGet('http://frontend:8080/');
      const orders = answer.body.called?.[0];
      return answer.status === 200 && orders?.status === 200 && orders.body?.called?.[0]?.status === 200;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
}

/** kubectl as the developer (the identity detour acts as); throws on failure. */
export async function developerKubectl(args: string[], input?: string): Promise<string> {
  const result = await kubectl('developer', args, input);
  if (result.code !== 0) {
    throw new ClusterError(
      'CLUSTER_COMMAND_FAILED',
      `kubectl (developer) ${args.join(' ')}:\n${result.stderr}`,
    );
  }
  return result.stdout;
}

export interface VirtualServiceObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
  };
  spec: { hosts: string[]; http: Array<Record<string, unknown>> };
}

export async function getVirtualService(name: string): Promise<VirtualServiceObject> {
  return JSON.parse(
    await developerKubectl(['-n', sampleNamespace, 'get', 'virtualservice', name, '-o', 'json']),
  ) as VirtualServiceObject;
}

/** What must be exactly as before once a session ended: spec, labels, annotations. */
export function routingState(vs: VirtualServiceObject) {
  return { spec: vs.spec, labels: vs.metadata.labels ?? {}, annotations: vs.metadata.annotations ?? {} };
}

/** Replaces a VirtualService's http routes as the developer; resolves when the API has it. */
export async function putRoutes(name: string, http: Array<Record<string, unknown>>): Promise<void> {
  const vs = await getVirtualService(name);
  vs.spec.http = http;
  await developerKubectl(['replace', '-f', '-'], JSON.stringify(vs));
}

/** A caller-pod request loop (`caller.ts until`) that reports when an answer first has `version`. */
export class VersionWatch {
  readonly process: ManagedProcess;

  constructor(url: string, version: string, headers: Record<string, string>, timeoutMs = 30_000) {
    this.process = new ManagedProcess(`watch ${url} for ${version}`, [
      binaryPath('kubectl'),
      `--kubeconfig=${kubeconfigPath('admin')}`,
      '-n',
      sampleNamespace,
      'exec',
      'caller',
      '--',
      'node',
      '/app/caller.ts',
      'until',
      url,
      version,
      String(timeoutMs),
      ...Object.entries(headers).map(([n, v]) => `${n}=${v}`),
    ]);
  }

  /** Resolves once the loop runs in the pod (its first line). */
  async started(): Promise<void> {
    await this.process.waitForLine('stdout', (json) => typeof json.started === 'number', 'loop started');
  }

  /** The pod's clock (the host's: same kernel) when the version was first seen, and how many tries. */
  async reached(): Promise<{ reachedAt: number; tries: number }> {
    const line = (await this.process.waitForLine(
      'stdout',
      (json) => typeof json.reachedAt === 'number' || json.timedOut === true,
      'the version to appear',
      60_000,
    )) as { reachedAt?: number; tries: number; last?: unknown };
    if (line.reachedAt === undefined) {
      throw new Error(`never reached: last answer ${JSON.stringify(line.last)}`);
    }
    return { reachedAt: line.reachedAt, tries: line.tries };
  }
}

/**
 * The detour command the suites run: this checkout's sources, or the command DETOUR_E2E_CLI names as
 * a JSON array (the installed package: `["<prefix>/bin/detour"]`, or `["<kubectl>", "detour"]` as a
 * kubectl plugin; tests/e2e/package.test.ts runs the main flow so).
 */
export function detourCommand(): string[] {
  const chosen = process.env.DETOUR_E2E_CLI;
  return chosen
    ? (JSON.parse(chosen) as string[])
    : [process.execPath, join(repoRoot, 'cli', 'src', 'main.ts')];
}

/** `detour <args>` as the developer (KUBECONFIG), in its own process group. */
export function startDetour(
  args: string[],
  env: Record<string, string> = {},
  cwd = repoRoot,
): ManagedProcess {
  return new ManagedProcess('detour', [...detourCommand(), ...args], {
    cwd,
    env: { ...process.env, KUBECONFIG: kubeconfigPath('developer'), ...env },
  });
}

/** `detour <args>` as the developer, run to completion (killed after `timeoutMs`, default 2 min). */
export function runDetour(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run([process.execPath, join(repoRoot, 'cli', 'src', 'main.ts'), ...args], {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, KUBECONFIG: kubeconfigPath('developer'), ...options.env },
    timeoutMs: options.timeoutMs ?? 120_000,
    what: `detour ${args.join(' ')}`,
  });
}

/**
 * Every VirtualService and DestinationRule of `namespace` (and every `kinds` given), by kind and
 * name, as what a revert must leave exactly as it was: spec, labels, annotations, owners.
 */
export async function routingObjects(
  namespace = sampleNamespace,
  kinds = 'virtualservices,destinationrules',
): Promise<Record<string, unknown>> {
  const list = JSON.parse(await developerKubectl(['-n', namespace, 'get', kinds, '-o', 'json'])) as {
    items: Array<{
      kind: string;
      spec?: unknown;
      metadata: {
        name: string;
        labels?: Record<string, string>;
        annotations?: Record<string, string>;
        ownerReferences?: unknown[];
      };
    }>;
  };
  return Object.fromEntries(
    list.items.map((o) => [
      `${o.kind}/${o.metadata.name}`,
      {
        spec: o.spec,
        labels: o.metadata.labels ?? {},
        annotations: o.metadata.annotations ?? {},
        ownerReferences: o.metadata.ownerReferences ?? [],
      },
    ]),
  );
}

/**
 * The sample's routing objects once no detour route is on them (an earlier run's session Lease
 * expires within 30 s and the agent reverts it): what a test compares the end state with.
 */
export function untouchedRoutingObjects(): Promise<Record<string, unknown>> {
  return waitFor(
    'no detour route on the sample’s routing objects (an earlier session’s Lease expires within 30 s)',
    async () => {
      const objects = await routingObjects();
      return JSON.stringify(objects).includes('detour-') ? undefined : objects;
    },
    { timeoutMs: 60_000, intervalMs: 1000 },
  );
}

/** Names of the detour Leases in `namespace`. */
export async function detourLeases(namespace = sampleNamespace): Promise<string[]> {
  const leases = JSON.parse(await developerKubectl(['-n', namespace, 'get', 'leases', '-o', 'json'])) as {
    items: Array<{ metadata: { name: string } }>;
  };
  return leases.items.map((l) => l.metadata.name).filter((n) => n.startsWith('detour-'));
}

/**
 * Resolves with `cli` once `served` holds (polled every 500 ms); when the CLI exits first or the
 * wait times out, stops it and fails with its last output.
 */
export async function whenServing(
  cli: ManagedProcess,
  what: string,
  served: () => Promise<boolean>,
  timeoutMs = 90_000,
): Promise<ManagedProcess> {
  const exited = cli.exited.then((status) => {
    throw new Error(`detour exited (${JSON.stringify(status)}) before serving`);
  });
  try {
    await Promise.race([waitFor(what, served, { timeoutMs, intervalMs: 500 }), exited]);
  } catch (error) {
    await cli.stop(10_000);
    throw new Error(`${(error as Error).message}\n${cli.tail(40)}`);
  }
  return cli;
}

/** Like Ctrl-C in a terminal: SIGINT to the CLI's whole process group (the CLI and its command). */
export function interrupt(cli: ManagedProcess): void {
  cli.signal('SIGINT');
}

/** The sample's orders app, for running on this machine under detour exec. */
const localOrdersApp = join(repoRoot, 'tests', 'cluster', 'sample', 'orders.ts');

/** The sample's orders app on this machine, on `port`, answering as version `local` from pod `name`. */
export function localOrders(port: number, name = 'laptop', extra: readonly string[] = []): string[] {
  return [
    process.execPath,
    localOrdersApp,
    '--port',
    String(port),
    '--version',
    'local',
    '--name',
    name,
    ...extra,
  ];
}

/**
 * `detour exec` arguments that steal `x-dev: <dev>` for deploy/orders in the sample namespace to
 * local port `localPort`, then `flags`, then the command (default: the sample's orders app on that
 * port, answering as version `local` from pod `laptop`).
 */
export function execOrdersArgs(
  dev: string,
  localPort: number,
  flags: readonly string[] = [],
  command: readonly string[] = localOrders(localPort),
): string[] {
  return [
    'exec',
    '--target',
    'deploy/orders',
    '-n',
    sampleNamespace,
    '--header',
    `x-dev=${dev}`,
    '--port',
    `8080:${localPort}`,
    ...flags,
    '--',
    ...command,
  ];
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Pods of the sample namespace matching `selector` that are not being deleted (a rollout's old ones may linger). */
export async function livePods(selector: string): Promise<Array<{ name: string; uid: string }>> {
  const pods = await developerKubectl([
    '-n',
    sampleNamespace,
    'get',
    'pods',
    '-l',
    selector,
    '-o',
    'jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.metadata.deletionTimestamp}{"\\n"}{end}',
  ]);
  return pods
    .split('\n')
    .map((line) => line.trim().split(' '))
    .filter((fields) => fields.length === 2)
    .map(([name, uid]) => ({ name: name as string, uid: uid as string }));
}

/**
 * The host pids of the agent's node processes in the sample namespace, one per live replica (a pod's
 * cgroup names the pod's uid). With several replicas a session's tunnel is on any one of them.
 */
export async function agentHostPids(): Promise<number[]> {
  const pods = await livePods('app.kubernetes.io/name=detour-agent');
  const pids: number[] = [];
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cgroup = readFileSync(`/proc/${entry}/cgroup`, 'utf8');
      if (!pods.some(({ uid }) => cgroup.includes(`pod${uid}`))) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('/app/agent/main.mjs'))
        pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  if (pids.length === 0)
    throw new Error(
      `no agent process (/app/agent/main.mjs) in the cgroup of a live agent pod (${JSON.stringify(pods)})`,
    );
  return pids;
}
