/**
 * Issue 11's benchmark (`npm run bench:cluster`): detour's real path, through the apiserver's
 * port-forward, on the local cluster with Istio, beside what the cluster itself gives, in one run.
 * Every loop is tests/cluster/sample/loop.ts (the same code on this machine and in the caller
 * pod); every request is `GET /bytes?n=100` of a sample app (answered without a downstream call).
 *
 * - egress: a process under `detour exec --target deploy/orders` calls http://payments:8080 (its
 *   pooled connections leave from the agent's pod) vs the same loop through `kubectl port-forward`
 *   to a payments pod, and vs the same call from the caller pod through the mesh;
 * - steal: the caller pod → orders with the session's header (served by the local orders under
 *   `detour exec`) vs the same requests without it (the real orders pod through the mesh);
 * - shapes: 1 connection sequential, and 20 connections at 200 req/s (evenly spread);
 * - egress bulk: 256 MiB, sha256-checked, vs `kubectl port-forward`; and detour's port-forward
 *   transport alone (no tunnel, no agent) vs `kubectl port-forward`, which tells the transport's
 *   share of the bulk path from the rest;
 * - CPU seconds per 1,000 requests of the CLI and the agent (/proc/<pid>/stat) on the 1-connection loops,
 *   and of every process on the bulk path per 256 MiB (CLI or kubectl, agents, sidecars, apiserver,
 *   kubelet, containerd, the harness's socat relays);
 * - per request, the whole machine's busy CPU and the time some task waited for a core (PSI), for
 *   each path and shape: one machine holds the cluster and the developer's side, so a path's extra
 *   CPU becomes queueing in every process it crosses, which is where the p99s go.
 *
 * Options: --runs N (default 1), --count N (requests per latency loop, default 1000),
 * --seconds S (cap per latency loop, default 60), --out FILE (default tests/bench/cluster-results.json).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { relay } from '../../cli/src/egress/relay.ts';
import { openPortForward } from '../../cli/src/kube/port-forward-stream.ts';
import { execInPod, kubeconfigPath } from '../cluster/cluster.ts';
import { binaryPath, repoRoot } from '../cluster/paths.ts';
import { cpuSeconds, type MachineUse, startMachineCount } from '../cluster/sample/hop.ts';
import { waitFor } from '../cluster/wait.ts';
import {
  agentHostPids,
  callerGet,
  execOrdersArgs,
  interrupt,
  livePods,
  sampleNamespace,
  startDetour,
  useSample,
} from '../e2e/support.ts';
import { freePort } from '../support/ports.ts';
import { ManagedProcess } from '../support/processes.ts';
import {
  atLeast,
  atMost,
  type Comparison,
  caseRecords,
  type ResultRecord,
  round,
  table,
} from './lib/results.ts';

const { values: options } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    count: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '60' },
    out: { type: 'string' },
  },
});
const runs = Number(options.runs);
const out = options.out ?? new URL('cluster-results.json', import.meta.url).pathname;
const loopScript = `${repoRoot}/tests/cluster/sample/loop.ts`;
const bulkBytes = 256 << 20;
const path = '/bytes?n=100';
const shapes = [
  { name: '1 connection', args: ['--connections', '1'] },
  { name: '20 connections, 200 req/s', args: ['--connections', '20', '--rate', '200'] },
] as const;
type Shape = (typeof shapes)[number]['name'];

interface Latency {
  requests: number;
  errors: number;
  errorSamples: string[];
  p50: number;
  p90: number;
  p99: number;
  achievedRate: number;
  cpuSeconds: Record<string, number>;
  /** The whole machine over the counted requests. */
  machine: MachineUse;
}
interface Bulk {
  gbitPerSecond: number;
  cpuSeconds: Record<string, number>;
}
/** The processes both bulk transfers cross besides their own client (CLI or kubectl) and the agent. */
const bulkPathCpu = [
  '--cpu',
  'apiserver=match:kube-apiserver',
  '--cpu',
  'kubelet=match:/kubelet-',
  '--cpu',
  'containerd=match:/containerd-\\d',
  '--cpu',
  'socat=match:^/usr/bin/socat',
  '--cpu',
  'sidecars=match:^/usr/local/bin/envoy',
];

const log = (line: string) => process.stderr.write(`${line}\n`);
const loopArgs = (shape: (typeof shapes)[number]) => [
  ...shape.args,
  '--count',
  options.count,
  '--max-seconds',
  options.seconds,
];

function lastJson<T>(text: string, mode: string): T {
  const line = text
    .split('\n')
    .reverse()
    .find((l) => l.startsWith(`{"mode":"${mode}"`));
  if (!line) throw new Error(`no ${mode} result in:\n${text.slice(-2000)}`);
  const result = JSON.parse(line) as T & { errors?: number; errorSamples?: string[] };
  if (result.errors) throw new Error(`${result.errors} failed requests: ${result.errorSamples?.join('; ')}`);
  return result;
}

/** The loop in the caller pod (through its sidecar), timed from here for the CPU of `pids`. */
async function fromCaller(args: string[], pids: Record<string, number> = {}): Promise<Latency> {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
  const result = await execInPod(sampleNamespace, 'caller', ['node', '/app/loop.ts', ...args]);
  const latency = lastJson<Latency>(`${result.stdout}\n${result.stderr}`, 'latency');
  latency.cpuSeconds = Object.fromEntries(
    Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid) - (before[name] ?? 0)]),
  );
  return latency;
}

const cpuFlags = (pids: Record<string, number>) =>
  Object.entries(pids)
    .map(([name, pid]) => `--cpu ${name}=${pid}`)
    .join(' ');

async function local(args: string[]): Promise<string> {
  const loop = new ManagedProcess('loop', [process.execPath, loopScript, ...args]);
  const status = await loop.exited;
  if (status.code !== 0) throw new Error(`loop.ts ${args.join(' ')} failed:\n${loop.tail()}`);
  return loop.stdout;
}

interface RunResult {
  egress: Record<Shape, Latency>;
  portForward: Record<Shape, Latency>;
  pod: Record<Shape, Latency>;
  steal: Record<Shape, Latency>;
  mesh: Record<Shape, Latency>;
  bulk: { detour: Bulk; portForward: Bulk; transport: Bulk };
}

/** `kubectl port-forward` (the cluster's own binary, as the developer) to a payments pod. */
async function portForward(pod: string): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const forward = new ManagedProcess('kubectl port-forward', [
    binaryPath('kubectl'),
    `--kubeconfig=${kubeconfigPath('developer')}`,
    '-n',
    sampleNamespace,
    'port-forward',
    `pod/${pod}`,
    `${port}:8080`,
  ]);
  await forward.waitForLine('stdout', /Forwarding from 127\.0\.0\.1/, 'port-forward ready', 20_000);
  return {
    url: `http://127.0.0.1:${port}`,
    pid: forward.pid as number,
    stop: async () => {
      await forward.stop();
    },
  };
}

/**
 * detour's own port-forward transport (cli/src/kube/port-forward-stream.ts, the WebSocket channel
 * protocol the tunnel rides) to a payments pod, behind a loopback listener in this process as
 * kubectl's is: the transport alone, without the tunnel, the agent or its sidecar.
 */
async function transportForward(pod: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath('developer'));
  const server = net.createServer({ noDelay: true }, (socket) => {
    openPortForward(kc, sampleNamespace, pod, 8080).then(
      (stream) => relay(socket, stream),
      (error: Error) => socket.destroy(error),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const bulkPathNames = {
  detour: 'detour exec',
  portForward: 'kubectl port-forward',
  transport: 'transport alone',
} as const;
/** The bulk GET from this machine through a local forwarder, with its CPU (`name=pid`) and the path's. */
async function localBulk(url: string, forwarderCpu: string): Promise<Bulk> {
  const args = ['bulk', `${url}/bytes`, '--bytes', String(bulkBytes), '--cpu', forwarderCpu, ...bulkPathCpu];
  return lastJson<Bulk>(await local(args), 'bulk');
}

/** A transfer the run has not made yet. */
const pending = (): Bulk => ({ gbitPerSecond: Number.NaN, cpuSeconds: {} });

async function oneRun(run: number, payments: string, agents: Record<string, number>): Promise<RunResult> {
  const session = `bench-${process.pid}-${run}`;
  const result = { egress: {}, portForward: {}, pod: {}, steal: {}, mesh: {} } as RunResult;

  log(`run ${run}: kubectl port-forward to ${payments}`);
  const forward = await portForward(payments);
  try {
    for (const shape of shapes)
      result.portForward[shape.name] = lastJson(
        await local(['latency', `${forward.url}${path}`, ...loopArgs(shape)]),
        'latency',
      );
    const pfBulk = await localBulk(forward.url, `kubectl=${forward.pid}`);
    result.bulk = { portForward: pfBulk, detour: pending(), transport: pending() };
  } finally {
    await forward.stop();
  }

  log(`run ${run}: detour's port-forward transport alone to ${payments}`);
  const transport = await transportForward(payments);
  try {
    result.bulk.transport = await localBulk(transport.url, `transport=${process.pid}`);
  } finally {
    await transport.stop();
  }

  log(`run ${run}: egress under detour exec (session ${session}-e)`);
  const node = `'${process.execPath}' '${loopScript}'`;
  const script = [
    ...shapes.map(
      (shape) =>
        `${node} latency http://payments:8080${path} ${loopArgs(shape).join(' ')} --cpu cli=$PPID ${cpuFlags(agents)}`,
    ),
    `${node} bulk http://payments:8080/bytes --bytes ${bulkBytes} --cpu cli=$PPID ${cpuFlags(agents)} ${bulkPathCpu.map((a) => `'${a}'`).join(' ')}`,
  ].join(' && ');
  const egress = startDetour(
    execOrdersArgs(
      `${session}-e`,
      await freePort(),
      ['--json', '--session', `${session}-e`],
      ['bash', '-c', script],
    ),
  );
  const status = await egress.exited;
  if (status.code !== 0) throw new Error(`detour exec (egress loops) failed:\n${egress.tail(40)}`);
  const lines = egress.stdout.split('\n').filter((line) => line.startsWith('{"mode":"latency"'));
  shapes.forEach((shape, i) => {
    result.egress[shape.name] = lastJson(lines[i] ?? '', 'latency');
  });
  result.bulk.detour = lastJson(egress.stdout, 'bulk');

  log(`run ${run}: the same call from the caller pod, through the mesh`);
  for (const shape of shapes)
    result.pod[shape.name] = await fromCaller(['latency', `http://payments:8080${path}`, ...loopArgs(shape)]);

  log(`run ${run}: steal (session ${session}-s) vs the real orders pod`);
  const dev = `${session}-s`;
  const localPort = await freePort();
  const steal = startDetour(execOrdersArgs(dev, localPort, ['--json', '--session', dev]));
  try {
    await waitFor(
      `x-dev: ${dev} to be answered by the local orders`,
      async () => (await callerGet('http://orders:8080/', { 'x-dev': dev })).body.version === 'local',
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    const cli = steal.pid as number;
    for (const shape of shapes) {
      result.steal[shape.name] = await fromCaller(
        ['latency', `http://orders:8080${path}`, ...loopArgs(shape), '--header', `x-dev=${dev}`],
        { cli, ...agents },
      );
      result.mesh[shape.name] = await fromCaller([
        'latency',
        `http://orders:8080${path}`,
        ...loopArgs(shape),
      ]);
    }
  } finally {
    interrupt(steal);
    await steal.exited;
  }
  return result;
}

/** CPU seconds of `who`; `agent` sums every replica (agent-0, agent-1, ...): the tunnel and the requests may be on any. */
function spentBy(cpuSeconds: Record<string, number>, who: string): number | undefined {
  const spent = Object.entries(cpuSeconds).filter(([name]) => name.replace(/-\d+$/, '') === who);
  return spent.length === 0 ? undefined : spent.reduce((sum, [, seconds]) => sum + seconds, 0);
}

function records(results: RunResult[]): ResultRecord[] {
  const all = <T>(pick: (r: RunResult) => T) => results.map(pick);
  const rows: Array<[string, string, Comparison[]]> = [];
  for (const { name } of shapes) {
    const egressRows: Comparison[] = [];
    const stealRows: Comparison[] = [];
    for (const [p, added] of [
      ['p50', 1],
      ['p99', 5],
    ] as const) {
      const detour = all((r) => r.egress[name][p]);
      const floor = all((r) => r.portForward[name][p] + r.pod[name][p]);
      egressRows.push(
        [
          'detour exec → payments',
          'kubectl port-forward + the call from a pod',
          p,
          'ms',
          detour,
          floor,
          atMost(added, 'added', `≤ +${added} ms`),
        ],
        [
          'detour exec → payments',
          'kubectl port-forward → payments pod',
          p,
          'ms',
          detour,
          all((r) => r.portForward[name][p]),
          null,
        ],
        [
          'detour exec → payments',
          'caller pod → payments (mesh)',
          p,
          'ms',
          detour,
          all((r) => r.pod[name][p]),
          null,
        ],
      );
      const stealAdded = p === 'p50' ? 2 : 5;
      stealRows.push([
        'caller pod → orders, x-dev → local orders',
        'caller pod → orders pod (mesh)',
        p,
        'ms',
        all((r) => r.steal[name][p]),
        all((r) => r.mesh[name][p]),
        atMost(stealAdded, 'added', `≤ +${stealAdded} ms`),
      ]);
    }
    rows.push(
      [
        `egress, ${name}`,
        `GET ${path}, ${options.count} requests (capped at ${options.seconds} s)`,
        egressRows,
      ],
      [
        `steal, ${name}`,
        `GET ${path}, ${options.count} requests (capped at ${options.seconds} s)`,
        stealRows,
      ],
    );
  }
  const machinePaths = [
    ['egress under detour exec', 'caller pod → payments (mesh)', 'egress', 'pod'],
    ['steal (x-dev → local orders)', 'caller pod → orders pod (mesh)', 'steal', 'mesh'],
  ] as const;
  const machineRows = (
    [
      ['busySeconds', 'busy CPU'],
      ['cpuWaitSeconds', 'CPU wait (PSI some)'],
    ] as const
  ).flatMap(([field, metric]) => {
    const perRequest = (latency: Latency) => (latency.machine[field] * 1000) / latency.requests;
    return shapes.flatMap(({ name }) =>
      machinePaths.map(
        ([subject, reference, path, referencePath]): Comparison => [
          `${subject}, ${name}`,
          reference,
          metric,
          'ms',
          all((r) => perRequest(r[path][name])),
          all((r) => perRequest(r[referencePath][name])),
          null,
        ],
      ),
    );
  });
  const perThousand = (latency: Latency, who: string) =>
    (spentBy(latency.cpuSeconds, who) ?? Number.NaN) * (1000 / latency.requests);
  const single = shapes[0].name;
  rows.push(
    [
      'egress bulk',
      `${bulkBytes >> 20} MiB on one connection, sha256-checked`,
      [
        [
          'detour exec → payments',
          'kubectl port-forward → payments pod',
          'throughput',
          'Gbit/s',
          all((r) => r.bulk.detour.gbitPerSecond),
          all((r) => r.bulk.portForward.gbitPerSecond),
          atLeast(0.5, 'ratio', '≥ 0.5×'),
        ],
        [
          "detour's port-forward transport alone → payments pod",
          'kubectl port-forward → payments pod',
          'throughput',
          'Gbit/s',
          all((r) => r.bulk.transport.gbitPerSecond),
          all((r) => r.bulk.portForward.gbitPerSecond),
          null,
        ],
      ],
    ],
    [
      `CPU per ${bulkBytes >> 20} MiB bulk`,
      'utime + stime from /proc/<pid>/stat over the transfer; agent sums the replicas, sidecars every envoy, socat the relays alive over the transfer',
      (
        [
          'cli',
          'kubectl',
          'transport',
          'agent',
          'sidecars',
          'apiserver',
          'kubelet',
          'containerd',
          'socat',
        ] as const
      ).flatMap((who): Comparison[] =>
        (['detour', 'portForward', 'transport'] as const)
          .filter((path) => results.some((r) => spentBy(r.bulk[path].cpuSeconds, who) !== undefined))
          .map((path) => [
            `${who}, ${bulkPathNames[path]}`,
            null,
            'CPU',
            's',
            all((r) => spentBy(r.bulk[path].cpuSeconds, who) ?? Number.NaN),
            null,
            null,
          ]),
      ),
    ],
    [
      'machine per request',
      'the whole machine (both cores: cluster, CLI, local app, loop) over the counted requests: /proc/stat busy time and the "some" total of /proc/pressure/cpu',
      machineRows,
    ],
    [
      'CPU per 1,000 requests',
      'utime + stime from /proc/<pid>/stat over the 1-connection loop (the steal loop adds the kubectl exec around it)',
      (['cli', 'agent'] as const).flatMap((who): Comparison[] => [
        [`${who}, egress`, null, 'CPU', 's', all((r) => perThousand(r.egress[single], who)), null, null],
        [`${who}, steal`, null, 'CPU', 's', all((r) => perThousand(r.steal[single], who)), null, null],
      ]),
    ],
  );
  return rows.flatMap(([caseName, notes, comparisons]) => caseRecords(caseName, notes, comparisons));
}

await useSample(log);
const [payments] = await livePods('app=payments,version=v1');
if (!payments) throw new Error('no live payments v1 pod in the sample namespace');
const agents = Object.fromEntries((await agentHostPids()).map((pid, i) => [`agent-${i}`, pid]));
const loadBefore = os.loadavg().map((x) => round(x, 2));
// What the cluster costs with no request in flight (control plane, istiod, sidecars, agents): the
// share of the per-request machine figures that is not the path's.
const restSeconds = 5;
const atRest = startMachineCount();
await sleep(restSeconds * 1000);
const rest = atRest();
const startedAt = new Date().toISOString();
const results: RunResult[] = [];
for (let run = 1; run <= runs; run++) results.push(await oneRun(run, payments.name, agents));
const list = records(results);
const report = {
  run: {
    startedAt,
    endedAt: new Date().toISOString(),
    loadBefore,
    loadAfter: os.loadavg().map((x) => round(x, 2)),
    machineAtRest: {
      seconds: restSeconds,
      busyCores: round(rest.busySeconds / restSeconds, 3),
      cpuWaitShare: round(rest.cpuWaitSeconds / restSeconds, 3),
      stolenCores: round(rest.stolenSeconds / restSeconds, 3),
    },
    runs,
    requestsPerLoop: Number(options.count),
    commit: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
  },
  records: list,
  raw: results,
};
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`${table(list)}\nresults: ${out}\n`);
