/**
 * detour benchmarks (issue 2, item 8): `npm run bench` [-- --seconds 10 --runs 3 --cases 1,2,3,4].
 * Every case runs side by side with its reference in one run, on one backend and one load
 * generator, alternating subject and reference run by run so drift hits both alike. Writes
 * tests/bench/results.json and prints a table. Every process is started and stopped by pid
 * (lib/processes.ts); all traffic stays on 127.0.0.1; every loop is bounded.
 *
 * CPU layout on this 2-core machine (cases 1 and 2): the proxy under test on CPU 1; the load
 * generator, the backend and the CLI on CPU 0. Cases 3 and 4 are not pinned (see notes).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSeconds } from '../cluster/sample/hop.ts';
import { caseLayerConnect, caseLayerStartup } from './layer-cases.ts';
import { envoyArgs, envoyBinary, writeBackendBootstrap, writeProxyBootstrap } from './lib/envoy.ts';
import { runFixedRate } from './lib/h2load.ts';
import {
  freePort,
  memoryOf,
  type Started,
  sleep,
  start,
  stop,
  stopAll,
  waitExit,
  waitForOutput,
  waitForPort,
} from './lib/processes.ts';
import {
  atLeast,
  atMost,
  type Comparison,
  caseRecords,
  type ResultRecord,
  round,
  table,
} from './lib/results.ts';
import { runWrk, type WrkResult } from './lib/wrk.ts';
import { caseNativeConnect, caseNativeJavaStartup, caseNativeRequest } from './native-cases.ts';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    cases: { type: 'string', default: '1,2,3,4,5,6,7,8,9' },
    bytes: { type: 'string', default: String(1 << 30) },
    connections: { type: 'string', default: '1000' },
    out: { type: 'string', default: fileURLToPath(new URL('results.json', import.meta.url)) },
  },
});
const seconds = Number(flags.seconds);
const runs = Number(flags.runs);
const cases = new Set(flags.cases.split(','));
const bulkBytes = Number(flags.bytes);
const heldConnections = Number(flags.connections);
if (!(seconds > 0 && seconds <= 120 && runs >= 1 && runs <= 10))
  throw new Error('--seconds must be 1..120 and --runs 1..10');

const root = fileURLToPath(new URL('../..', import.meta.url));
const node = process.execPath;
const peer = fileURLToPath(new URL('egress-peer.ts', import.meta.url));
const token = 'bench-token';
const PROXY_CPU = 1;
const LOAD_CPU = 0;

function requireTool(tool: string, install: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${tool} is missing: install it with \`${install}\``);
  }
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

function machine() {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  let envoyVersion = 'unknown';
  try {
    envoyVersion =
      /version: (\S+)/.exec(execFileSync(envoyBinary(), ['--version'], { encoding: 'utf8' }))?.[1] ??
      envoyVersion;
  } catch {}
  return {
    cpu,
    cores: os.cpus().length,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    node: process.version,
    envoy: envoyVersion,
    wrk: execFileSync('sh', ['-c', 'wrk --version 2>&1 | head -1 || true'], { encoding: 'utf8' }).trim(),
    h2load: execFileSync('sh', ['-c', 'h2load --version 2>&1 | head -1 || true'], {
      encoding: 'utf8',
    }).trim(),
    // The code measured: HEAD plus however many uncommitted changes the data-plane packages had.
    commit: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim(),
    uncommitted: execFileSync(
      'git',
      ['status', '--porcelain', '--', 'agent', 'cli', 'router', 'layer-preload'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    )
      .split('\n')
      .filter(Boolean).length,
  };
}

interface Ports {
  backend: number;
  backendAdmin: number;
  envoy: number;
  envoyAdmin: number;
  httpProxy: number;
  tunnel: number;
  inbound: number;
  admin: number;
  sink: number;
  hold: number;
}

async function allocatePorts(): Promise<Ports> {
  const names: (keyof Ports)[] = [
    'backend',
    'backendAdmin',
    'envoy',
    'envoyAdmin',
    'httpProxy',
    'tunnel',
    'inbound',
    'admin',
    'sink',
    'hold',
  ];
  const ports = {} as Ports;
  const seen = new Set<number>();
  for (const name of names) {
    let port = await freePort();
    for (let i = 0; i < 20 && seen.has(port); i++) port = await freePort();
    seen.add(port);
    ports[name] = port;
  }
  return ports;
}

/** The agent as it ships in its image: the bundle `npm run build:agent` makes (built by main()). */
function startAgent(ports: Ports, suffix = ''): Started {
  return start(`agent${suffix}`, node, ['dist/agent/main.mjs'], {
    cwd: root,
    cpu: PROXY_CPU,
    env: {
      DETOUR_TUNNEL_LISTEN: `127.0.0.1:${ports.tunnel}`,
      DETOUR_INBOUND_LISTEN: `127.0.0.1:${ports.inbound}`,
      DETOUR_ADMIN_LISTEN: `127.0.0.1:${ports.admin}`,
      DETOUR_UPSTREAM: `127.0.0.1:${ports.backend}`,
      DETOUR_TOKENS: token,
    },
  });
}

/** CLI flags for a session on the bench agent; the local app is the backend. */
function sessionArgs(ports: Ports, header: string): string[] {
  return [
    '--agent',
    `127.0.0.1:${ports.tunnel}`,
    '--token',
    token,
    '--header',
    header,
    '--port',
    `8080:${ports.backend}`,
    // Loopback destinations stay local by default; the benchmark sink is on loopback, so it is
    // included explicitly to make its connections leave from the agent, through the tunnel.
    '--egress-include',
    '127.0.0.1',
    '--json',
  ];
}

function bench(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** The BENCHJSON line a helper printed, parsed. */
function benchJson<T>(p: Started): T {
  const line = p
    .output()
    .split('\n')
    .find((l) => l.startsWith('BENCHJSON '));
  if (!line) throw new Error(`${p.name} printed no result:\n${p.output().slice(-3000)}`);
  return JSON.parse(line.slice('BENCHJSON '.length)) as T;
}

/** `pids`: the process of each proxy, whose CPU time per request is recorded next to its req/s. */
async function caseProxying(
  ports: Ports,
  records: ResultRecord[],
  pids: Record<string, number>,
): Promise<void> {
  const url = (port: number) => `http://127.0.0.1:${port}/`;
  const subjects = [
    { name: 'agent', port: ports.inbound },
    { name: 'envoy', port: ports.envoy },
    { name: 'http-proxy', port: ports.httpProxy },
  ];
  const variants = [
    { name: 'no routing header', header: undefined },
    { name: 'x-dev: dev-b (another value)', header: 'x-dev: dev-b' },
  ];
  bench(`case 1: warming up each proxy for 2 s`);
  for (const s of subjects)
    await runWrk({ url: url(s.port), connections: 64, seconds: 2, header: undefined, cpu: LOAD_CPU });
  const results = new Map<string, WrkResult[]>();
  const cpuPer10k = new Map<string, number[]>();
  for (let run = 0; run < runs; run++) {
    for (const v of variants) {
      // Rotate the order each run so no subject always follows the same neighbour. The backend
      // alone (no proxy) runs once per run: it shows the generator's core is not the bottleneck.
      const list =
        v.header === undefined ? [...subjects, { name: 'backend alone', port: ports.backend }] : subjects;
      for (let k = 0; k < list.length; k++) {
        const s = list[(k + run) % list.length] as (typeof list)[number];
        const pid = pids[s.name];
        const cpuBefore = pid === undefined ? 0 : cpuSeconds(pid);
        const r = await runWrk({
          url: url(s.port),
          connections: 64,
          seconds,
          header: v.header,
          cpu: LOAD_CPU,
        });
        if (r.errors > 0)
          throw new Error(`case 1: ${s.name} (${v.name}) had ${r.errors} errors in ${r.requests} requests`);
        const key = `${s.name}|${v.name}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        let cpuText = '';
        if (pid !== undefined) {
          const per10k = ((cpuSeconds(pid) - cpuBefore) / r.requests) * 10_000;
          cpuPer10k.set(key, [...(cpuPer10k.get(key) ?? []), per10k]);
          cpuText = `  CPU ${per10k.toFixed(3)} s/10k req`;
        }
        bench(
          `  run ${run + 1}/${runs} ${s.name.padEnd(10)} ${v.name.padEnd(28)} ${r.rps.toFixed(0)} req/s  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms${cpuText}  (load ${loadAverage()})`,
        );
      }
    }
  }
  const notes = `wrk 1 thread, 64 keep-alive connections, ${seconds} s per run, on CPU ${LOAD_CPU} with the Envoy backend (direct_response 200 "ok"); proxy under test alone on CPU ${PROXY_CPU}; Envoy --concurrency 1; agent with one steal session x-dev=dev-a registered, requests take the pass-through path`;
  for (const v of variants) {
    const get = (s: string, f: (r: WrkResult) => number) => (results.get(`${s}|${v.name}`) ?? []).map(f);
    const c = `1 proxying (${v.name})`;
    const info = 'for information';
    const rps = (name: string) => get(name, (r) => r.rps);
    const p50 = (name: string) => get(name, (r) => r.p50Ms);
    const p99 = (name: string) => get(name, (r) => r.p99Ms);
    const cpu = (name: string) => cpuPer10k.get(`${name}|${v.name}`) ?? [];
    const cpuNote =
      "for information: utime + stime of the proxy process (/proc/<pid>/stat) over each run, per 10,000 requests; the ratio is subject / reference (lower is cheaper) and moves far less with the machine's load than req/s";
    records.push(
      ...caseRecords(c, notes, [
        [
          'agent',
          'envoy',
          'requests/s',
          'req/s',
          rps('agent'),
          rps('envoy'),
          atLeast(0.5, 'ratio', '>= 0.5x envoy'),
        ],
        [
          'agent',
          'http-proxy',
          'requests/s',
          'req/s',
          rps('agent'),
          rps('http-proxy'),
          atLeast(3, 'ratio', '>= 3x http-proxy'),
        ],
        [
          'agent',
          'envoy',
          'p99 latency',
          'ms',
          p99('agent'),
          p99('envoy'),
          atMost(2, 'ratio', '<= 2x envoy'),
        ],
        ['agent', 'envoy', 'p50 latency', 'ms', p50('agent'), p50('envoy'), null, info],
        ...(v.header === undefined
          ? [
              [
                'backend alone',
                'envoy',
                'requests/s',
                'req/s',
                rps('backend alone'),
                rps('envoy'),
                null,
                'for information: wrk straight to the backend, same core; far above every proxy means the proxy core is the bottleneck',
              ] satisfies Comparison,
            ]
          : []),
        ['http-proxy', 'envoy', 'p99 latency', 'ms', p99('http-proxy'), p99('envoy'), null, info],
        [
          'agent',
          'http-proxy',
          'CPU per 10,000 requests',
          's',
          cpu('agent'),
          cpu('http-proxy'),
          null,
          cpuNote,
        ],
        ['agent', 'envoy', 'CPU per 10,000 requests', 's', cpu('agent'), cpu('envoy'), null, cpuNote],
      ]),
    );
  }
}

/**
 * Case 2 twice: 20 connections at 50 req/s each (h2load starts their timers together, so the
 * requests arrive in bursts of 20 every 20 ms) and one connection at 1,000 req/s (one request every
 * millisecond, no bursts): the first shows how the path absorbs bursts, the second what it adds to
 * one request.
 */
async function caseSteal(ports: Ports, records: ResultRecord[]): Promise<void> {
  for (const clients of [20, 1]) await caseStealWith(ports, records, clients);
}

async function caseStealWith(ports: Ports, records: ResultRecord[], clients: number): Promise<void> {
  const rate = 1000;
  const subjects = [
    { name: 'steal path', port: ports.inbound, header: 'x-dev: dev-a' },
    { name: 'direct', port: ports.backend, header: 'x-dev: dev-a' },
  ];
  bench(`case 2 (${clients} connection(s)): warming up the steal path for 2 s`);
  await runFixedRate({
    url: `http://127.0.0.1:${ports.inbound}/`,
    rate,
    seconds: 2,
    clients,
    header: 'x-dev: dev-a',
    cpu: LOAD_CPU,
  });
  const samples = new Map<string, Awaited<ReturnType<typeof runFixedRate>>[]>();
  for (let run = 0; run < runs; run++) {
    for (let k = 0; k < subjects.length; k++) {
      const s = subjects[(k + run) % subjects.length] as (typeof subjects)[number];
      const r = await runFixedRate({
        url: `http://127.0.0.1:${s.port}/`,
        rate,
        seconds,
        clients,
        header: s.header,
        cpu: LOAD_CPU,
      });
      if (r.errors > 0) throw new Error(`case 2: ${s.name} had ${r.errors} errors`);
      samples.set(s.name, [...(samples.get(s.name) ?? []), r]);
      bench(
        `  run ${run + 1}/${runs} ${s.name.padEnd(10)} ${r.achievedRps.toFixed(0)} req/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  p99.9 ${r.p999Ms.toFixed(3)} ms  (load ${loadAverage()})`,
      );
    }
  }
  const get = (name: string, f: (r: Awaited<ReturnType<typeof runFixedRate>>) => number) =>
    (samples.get(name) ?? []).map(f);
  const notes = `h2load --h1, ${clients} connections at ${rate / clients} req/s each = ${rate} req/s, ${seconds} s per run, on CPU ${LOAD_CPU}; steal path = agent inbound (CPU ${PROXY_CPU}) -> tunnel -> CLI (CPU ${LOAD_CPU}) -> local app; local app = the Envoy backend; latency = send to end of response per request (h2load --log-file)`;
  const c = `2 steal path at 1,000 req/s, ${clients} connection${clients === 1 ? '' : 's'}`;
  const both = (f: (r: Awaited<ReturnType<typeof runFixedRate>>) => number) =>
    [get('steal path', f), get('direct', f)] as const;
  records.push(
    ...caseRecords(c, notes, [
      ['steal path', 'direct', 'p50 latency', 'ms', ...both((r) => r.p50Ms), atMost(1, 'added', '<= +1 ms')],
      ['steal path', 'direct', 'p99 latency', 'ms', ...both((r) => r.p99Ms), atMost(5, 'added', '<= +5 ms')],
      ['steal path', 'direct', 'p99.9 latency', 'ms', ...both((r) => r.p999Ms), null, 'for information'],
      [
        'steal path',
        'direct',
        'achieved rate',
        'req/s',
        ...both((r) => r.achievedRps),
        null,
        'the generator kept the fixed rate if both are ~1000',
      ],
    ]),
  );
}

interface SendResult {
  bytes: number;
  seconds: number;
  gbps: number;
  complete: boolean;
}

/** CPU seconds `pid` used so far, read every 100 ms so that the last reading outlives its exit. */
function watchCpu(pid: number): { stop: () => number } {
  let last = 0;
  const read = () => {
    try {
      last = cpuSeconds(pid);
    } catch {} // exited: the last reading stands
  };
  const timer = setInterval(read, 100);
  return {
    stop: () => {
      clearInterval(timer);
      return last;
    },
  };
}

async function caseBulkEgress(ports: Ports, records: ResultRecord[], agentPid: number): Promise<void> {
  const sink = start('sink', node, [peer, 'sink', String(ports.sink)], { cwd: root });
  await waitForPort(ports.sink, sink);
  const tunnelled: number[] = [];
  const direct: number[] = [];
  const gib = bulkBytes / 2 ** 30;
  const cpuPerGiB = {
    cli: [] as number[],
    agent: [] as number[],
    sinkTunnelled: [] as number[],
    sinkDirect: [] as number[],
  };
  const timeoutMs = 120_000;
  for (let run = 0; run < runs; run++) {
    for (const via of run % 2 ? ['direct', 'proxy'] : ['proxy', 'direct']) {
      const sendArgs = [peer, 'send', '127.0.0.1', String(ports.sink), String(bulkBytes), via];
      const p =
        via === 'direct'
          ? start('send-direct', node, sendArgs, { cwd: root })
          : // `detour exec` starts a session and runs the sender with HTTP_PROXY set; NODE_OPTIONS (the
            // Node layer) is dropped so the sender speaks to the proxy exactly as written.
            start(
              'detour-exec-send',
              node,
              [
                'cli/src/main.ts',
                'exec',
                ...sessionArgs(ports, 'x-dev=bench-egress'),
                '--',
                'env',
                '-u',
                'NODE_OPTIONS',
                node,
                ...sendArgs,
              ],
              { cwd: root },
            );
      const before = { agent: cpuSeconds(agentPid), sink: cpuSeconds(sink.pid) };
      const client = watchCpu(p.pid);
      const code = await waitExit(p, timeoutMs);
      const clientCpu = client.stop();
      if (code !== 0) throw new Error(`case 3: ${p.name} exited with ${code}:\n${p.output().slice(-3000)}`);
      const r = benchJson<SendResult>(p);
      if (!r.complete) throw new Error(`case 3: ${p.name} delivered ${r.bytes} of ${bulkBytes} bytes`);
      (via === 'direct' ? direct : tunnelled).push(r.gbps);
      const sinkCpu = (cpuSeconds(sink.pid) - before.sink) / gib;
      let cpuText = `sink ${sinkCpu.toFixed(2)}`;
      if (via === 'direct') cpuPerGiB.sinkDirect.push(sinkCpu);
      else {
        const agentCpu = (cpuSeconds(agentPid) - before.agent) / gib;
        cpuPerGiB.sinkTunnelled.push(sinkCpu);
        cpuPerGiB.agent.push(agentCpu);
        cpuPerGiB.cli.push(clientCpu / gib);
        cpuText = `CLI ${(clientCpu / gib).toFixed(2)}, agent ${agentCpu.toFixed(2)}, ${cpuText}`;
      }
      bench(
        `  run ${run + 1}/${runs} ${via === 'direct' ? 'direct' : 'through tunnel'}: ${r.gbps.toFixed(2)} Gbit/s (${(r.bytes / 2 ** 20).toFixed(0)} MiB in ${r.seconds.toFixed(2)} s)  CPU s/GiB ${cpuText}  (load ${loadAverage()})`,
      );
    }
  }
  await stop(sink);
  const notes = `${(bulkBytes / 2 ** 30).toFixed(2)} GiB one TCP connection; tunnel = sender -> CLI HTTP CONNECT proxy (from the session's HTTP_PROXY) -> tunnel -> agent -> sink; direct = sender -> sink; not pinned (sender, CLI, agent and sink share the 2 cores)`;
  const c = '3 bulk egress';
  records.push(
    ...caseRecords(c, notes, [
      [
        'through tunnel',
        'direct loopback',
        'throughput',
        'Gbit/s',
        tunnelled,
        direct,
        atLeast(0.4, 'ratio', '>= 0.4x direct'),
      ],
      ['through tunnel', null, 'throughput', 'Gbit/s', tunnelled, null, atLeast(1, 'value', '>= 1 Gbit/s')],
      // For information: utime + stime (/proc/<pid>/stat), far less load-sensitive than Gbit/s.
      [
        'CLI (whole detour exec: session start and end too)',
        null,
        'CPU per GiB',
        's',
        cpuPerGiB.cli,
        null,
        null,
      ],
      ['agent', null, 'CPU per GiB', 's', cpuPerGiB.agent, null, null],
      [
        'sink, through tunnel',
        'sink, direct',
        'CPU per GiB',
        's',
        cpuPerGiB.sinkTunnelled,
        cpuPerGiB.sinkDirect,
        null,
      ],
    ]),
  );
}

async function agentOpenStreams(adminPort: number): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('detour_tunnel_open_streams'));
    return Number(line?.split(/\s+/).pop() ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}

async function caseMemory(ports: Ports, records: ResultRecord[]): Promise<void> {
  const holder = start('hold', node, [peer, 'hold', String(ports.hold)], { cwd: root });
  await waitForPort(ports.hold, holder);
  const idle: number[] = [];
  const loaded: number[] = [];
  const peak: number[] = [];
  let streams = Number.NaN;
  for (let run = 0; run < runs; run++) {
    // A fresh agent per run, so the figure is what 1,000 connections cost and not what case 1 left.
    const mem = { ...ports, tunnel: await freePort(), inbound: await freePort(), admin: await freePort() };
    const agent = startAgent(mem, '-memory');
    await waitForPort(mem.admin, agent);
    await sleep(500);
    const before = await memoryOf(agent.pid);
    const opener = start(
      'detour-exec-open',
      node,
      [
        'cli/src/main.ts',
        'exec',
        ...sessionArgs(mem, 'x-dev=bench-memory'),
        '--',
        'env',
        '-u',
        'NODE_OPTIONS',
        node,
        peer,
        'open',
        '127.0.0.1',
        String(ports.hold),
        String(heldConnections),
        '120',
      ],
      { cwd: root },
    );
    await waitForOutput(opener, (t) => t.includes('BENCHJSON'), 120_000);
    const ready = benchJson<{ open: number; pid: number }>(opener);
    await sleep(1000);
    const during = await memoryOf(agent.pid);
    streams = await agentOpenStreams(mem.admin);
    bench(
      `  run ${run + 1}/${runs}: agent RSS idle ${before.rssMiB.toFixed(1)} MiB, with ${ready.open} connections ${during.rssMiB.toFixed(1)} MiB (peak ${during.hwmMiB.toFixed(1)} MiB), agent open streams ${streams}`,
    );
    idle.push(before.rssMiB);
    loaded.push(during.rssMiB);
    peak.push(during.hwmMiB);
    // The opener is the grandchild (detour exec runs it); it printed its pid so it is ended by pid.
    try {
      process.kill(ready.pid, 'SIGTERM');
    } catch {}
    await waitExit(opener, 10_000);
    await stop(agent);
  }
  await stop(holder);
  // What any Node process costs before loading detour, for context: a bare `node` and one that
  // runs a TypeScript file (type stripping loads its own module).
  const bare = start('node-bare', node, ['-e', 'setTimeout(() => {}, 10000)']);
  const tsFile = join(mkdtempSync(join(os.tmpdir(), 'detour-bench-ts-')), 'idle.ts');
  writeFileSync(tsFile, 'const idle: number = 10_000;\nsetTimeout(() => {}, idle);\n');
  const bareTs = start('node-bare-ts', node, [tsFile]);
  await sleep(1500);
  const bareRss = (await memoryOf(bare.pid)).rssMiB;
  const bareTsRss = (await memoryOf(bareTs.pid)).rssMiB;
  await stop(bare);
  await stop(bareTs);
  rmSync(tsFile, { force: true });
  const notes = `for scale: an idle bare node ${bareRss.toFixed(1)} MiB, an idle node running a .ts file ${bareTsRss.toFixed(1)} MiB; ${heldConnections} egress connections held open through \`detour exec\` (HTTP CONNECT) -> tunnel -> agent -> loopback echo server, each checked with a round-trip; RSS from /proc/<pid>/status; fresh agent per run; agent open tunnel streams at measurement: ${streams}`;
  const c = `4 agent memory, ${heldConnections} tunnelled connections`;
  const goal = atMost(100e6 / 2 ** 20, 'value', '<= 100 MB (95.4 MiB)');
  records.push(
    ...caseRecords(c, notes, [
      ['agent VmRSS', 'agent VmRSS idle', 'resident memory', 'MiB', loaded, idle, goal],
      ['agent VmHWM', null, 'peak resident memory', 'MiB', peak, null, goal],
    ]),
  );
}

async function main(): Promise<void> {
  requireTool('wrk', 'apt-get install wrk');
  requireTool('h2load', 'apt-get install nghttp2-client');
  requireTool('taskset', 'apt-get install util-linux');
  const envoy = envoyBinary();
  execFileSync(node, ['scripts/build-agent.mjs'], { cwd: root, stdio: 'inherit' });
  const startedAt = new Date().toISOString();
  const loadBefore = loadAverage();
  bench(
    `detour bench: ${runs} runs x ${seconds} s, cases ${[...cases].join(',')}; load average ${loadBefore}`,
  );
  const ports = await allocatePorts();
  const dir = mkdtempSync(join(os.tmpdir(), 'detour-bench-'));
  const records: ResultRecord[] = [];
  const write = (status: string) =>
    writeFileSync(
      flags.out,
      `${JSON.stringify(
        records.map((r) => ({
          ...r,
          run: { startedAt, status, loadBefore, loadAfter: loadAverage(), machine: info },
        })),
        null,
        2,
      )}\n`,
    );
  const info = machine();
  try {
    writeBackendBootstrap(join(dir, 'backend.yaml'), ports.backend, ports.backendAdmin);
    writeProxyBootstrap(join(dir, 'envoy.yaml'), ports.envoy, ports.envoyAdmin, ports.backend, ports.backend);
    const backend = start('backend-envoy', envoy, envoyArgs(join(dir, 'backend.yaml')), { cpu: LOAD_CPU });
    await waitForPort(ports.backend, backend);
    if (['1', '2', '3', '6', '7', '8'].some((c) => cases.has(c))) {
      const agent = startAgent(ports);
      await waitForPort(ports.inbound, agent);
      // One steal session x-dev=dev-a for the whole run: case 1 evaluates it on every request,
      // case 2 goes through it.
      const cli = start('detour-up', node, ['cli/src/main.ts', 'up', ...sessionArgs(ports, 'x-dev=dev-a')], {
        cwd: root,
        cpu: LOAD_CPU,
      });
      await waitForOutput(cli, (t) => t.includes('"session.ready"'), 20_000);
      if (cases.has('1')) {
        const envoyProxy = start('envoy-proxy', envoy, envoyArgs(join(dir, 'envoy.yaml')), {
          cpu: PROXY_CPU,
        });
        const httpProxy = start(
          'http-proxy',
          node,
          [
            fileURLToPath(new URL('http-proxy-server.ts', import.meta.url)),
            String(ports.httpProxy),
            String(ports.backend),
            String(ports.backend),
          ],
          { cwd: root, cpu: PROXY_CPU },
        );
        await waitForPort(ports.envoy, envoyProxy);
        await waitForPort(ports.httpProxy, httpProxy);
        await caseProxying(ports, records, {
          agent: agent.pid,
          envoy: envoyProxy.pid,
          'http-proxy': httpProxy.pid,
        });
        write('partial');
        await stop(envoyProxy);
        await stop(httpProxy);
      }
      if (cases.has('2')) {
        await caseSteal(ports, records);
        write('partial');
      }
      if (cases.has('3')) {
        await caseBulkEgress(ports, records, agent.pid);
        write('partial');
      }
      if (['6', '7', '8'].some((c) => cases.has(c))) {
        const hold = start('hold', node, [peer, 'hold', String(ports.hold)], { cwd: root });
        await waitForPort(ports.hold, hold);
        const spec = {
          root,
          peer,
          holdPort: ports.hold,
          sessionArgs: sessionArgs(ports, 'x-dev=bench-connect'),
          runs,
        };
        if (cases.has('6')) await caseLayerConnect(records, spec, bench);
        if (cases.has('7')) await caseNativeConnect(records, spec, bench);
        if (cases.has('8')) await caseNativeRequest(records, spec, bench);
        await stop(hold);
        write('partial');
      }
      await stop(cli);
      await stop(agent);
    }
    if (cases.has('4')) {
      await caseMemory(ports, records);
    }
    if (cases.has('5')) caseLayerStartup(records, bench);
    if (cases.has('9')) caseNativeJavaStartup(records, bench);
    write('complete');
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  bench('');
  bench(table(records));
  bench('');
  bench(
    `machine: ${info.cpu}, ${info.cores} cores; node ${info.node}; envoy ${info.envoy}; code ${info.commit} + ${info.uncommitted} uncommitted data-plane files; load average before ${loadBefore}, after ${loadAverage()}`,
  );
  const missed = records.filter((r) => r.met === false);
  bench(
    missed.length
      ? `goals missed:\n${missed.map((r) => `  ${r.case}: ${r.subject} ${r.metric} ${r.value} ${r.unit}${r.ratio === null ? '' : ` (${r.ratio}x ${r.reference})`}, goal ${r.goal}`).join('\n')}`
      : 'all goals met',
  );
  bench(`results: ${flags.out}`);
}

main().catch(async (error: Error) => {
  process.stderr.write(`bench failed: ${error.stack ?? error.message}\n`);
  await stopAll();
  process.exit(1);
});
