/**
 * Issue 10's benchmarks: what the native layer (LD_PRELOAD) costs a process. The peer is
 * egress-peer.ts run by node with NODE_OPTIONS cleared, so the native layer (not the Node layer)
 * routes it under `detour exec`.
 *   case 7  connection set-up (connect() to the echo of the first byte): through the native layer,
 *           the CLI and the tunnel vs direct loopback; and to a loopback destination that stays
 *           local, with the library loaded vs without (its cost on connections it does not route)
 *   case 8  per-request latency on an established connection: one-byte round trips through the
 *           native layer's FORWARD vs the same path without the library (HTTP CONNECT to the proxy)
 *   case 9  start-up of `java -version` with the library preloaded vs without
 */
import { execFileSync } from 'node:child_process';
import { nativeLibraryPath } from '@detour/layer';
import { start, waitExit } from './lib/processes.ts';
import { makeRecord, type ResultRecord } from './lib/results.ts';

interface Spec {
  root: string;
  peer: string;
  holdPort: number;
  sessionArgs: string[];
  runs: number;
}
type Log = (line: string) => void;
type Percentiles = { p50Ms: number; p99Ms: number };

/** Runs egress-peer (node without the Node layer), under `detour exec` when `session` is given. */
async function peerRun(
  spec: Spec,
  name: string,
  peerArgs: string[],
  options: { session: boolean; env?: Record<string, string>; unsetPreload?: boolean },
): Promise<Percentiles> {
  const command = [
    'env',
    ...(options.unsetPreload ? ['-u', 'LD_PRELOAD'] : []),
    'NODE_OPTIONS=',
    process.execPath,
    spec.peer,
    ...peerArgs,
  ];
  const [file = 'env', ...args] = options.session
    ? [process.execPath, 'cli/src/main.ts', 'exec', ...spec.sessionArgs, '--', ...command]
    : command;
  const p = start(name, file, args, { cwd: spec.root, env: options.env });
  const code = await waitExit(p, 180_000);
  const line = /BENCHJSON (.*)/.exec(p.output())?.[1];
  if (code !== 0 || !line) throw new Error(`${name} exited with ${code}:\n${p.output().slice(-3000)}`);
  return JSON.parse(line) as Percentiles;
}

function percentileRecords(
  records: ResultRecord[],
  base: { case: string; subject: string; reference: string; notes: string },
  subject: Percentiles[],
  reference: Percentiles[],
  goalOnP50: { ratio: number; text: string } | null,
): void {
  for (const [key, metric] of [
    ['p50Ms', 'p50 latency'],
    ['p99Ms', 'p99 latency'],
  ] as const) {
    records.push(
      makeRecord({
        ...base,
        metric,
        unit: 'ms',
        subjectSamples: subject.map((s) => s[key]),
        referenceSamples: reference.map((s) => s[key]),
        goal:
          goalOnP50 && key === 'p50Ms'
            ? { on: 'ratio', op: '<=', target: goalOnP50.ratio, text: goalOnP50.text }
            : null,
      }),
    );
  }
}

export async function caseNativeConnect(records: ResultRecord[], spec: Spec, log: Log): Promise<void> {
  const count = 300;
  const args = ['connect', '127.0.0.1', String(spec.holdPort), String(count)];
  const loaded = { LD_PRELOAD: nativeLibraryPath(), DETOUR_PROXY: '127.0.0.1:9' };
  const routed: Percentiles[] = [];
  const direct: Percentiles[] = [];
  const localLoaded: Percentiles[] = [];
  for (let run = 0; run < spec.runs; run++) {
    direct.push(await peerRun(spec, 'connect-direct', args, { session: false }));
    routed.push(await peerRun(spec, 'connect-native', args, { session: true }));
    localLoaded.push(await peerRun(spec, 'connect-local-loaded', args, { session: false, env: loaded }));
    log(
      `  case 7 run ${run + 1}/${spec.runs}: p50 direct ${direct.at(-1)?.p50Ms.toFixed(3)} ms, native layer → tunnel ${routed.at(-1)?.p50Ms.toFixed(3)} ms, local with the library ${localLoaded.at(-1)?.p50Ms.toFixed(3)} ms`,
    );
  }
  percentileRecords(
    records,
    {
      case: '7 connection set-up through the native layer',
      subject: 'native layer -> CLI -> tunnel -> agent',
      reference: 'direct loopback',
      notes: `${count} sequential connections per run (node with NODE_OPTIONS cleared, LD_PRELOAD from detour exec), connect() to the echo of the first byte; the destination is included in the egress policy so it leaves from the agent`,
    },
    routed,
    direct,
    null,
  );
  percentileRecords(
    records,
    {
      case: '7 connection set-up through the native layer',
      subject: 'loopback with the library loaded (stays local)',
      reference: 'loopback without the library',
      notes: `${count} sequential connections per run; LD_PRELOAD and DETOUR_PROXY set, the destination not routed: the cost of the interposed connect on connections it leaves alone`,
    },
    localLoaded,
    direct,
    { ratio: 1.05, text: '<= 1.05 x' },
  );
}

export async function caseNativeRequest(records: ResultRecord[], spec: Spec, log: Log): Promise<void> {
  const count = 2000;
  const args = (via: string) => ['pingpong', '127.0.0.1', String(spec.holdPort), String(count), via];
  const native: Percentiles[] = [];
  const proxy: Percentiles[] = [];
  for (let run = 0; run < spec.runs; run++) {
    native.push(await peerRun(spec, 'pingpong-native', args('direct'), { session: true }));
    proxy.push(await peerRun(spec, 'pingpong-proxy', args('proxy'), { session: true, unsetPreload: true }));
    log(
      `  case 8 run ${run + 1}/${spec.runs}: round trip p50 native layer ${native.at(-1)?.p50Ms.toFixed(3)} ms, HTTP CONNECT without the library ${proxy.at(-1)?.p50Ms.toFixed(3)} ms`,
    );
  }
  percentileRecords(
    records,
    {
      case: '8 request latency on an established connection',
      subject: 'native layer FORWARD (one-shot port -> CLI -> tunnel)',
      reference: 'HTTP CONNECT to the CLI proxy, no library',
      notes: `${count} one-byte round trips on one connection per run, through the CLI, the tunnel and the agent to an echo; both paths relay in the CLI`,
    },
    native,
    proxy,
    { ratio: 1.05, text: '<= 1.05 x (within 5 %)' },
  );
}

function javaStartMs(env: NodeJS.ProcessEnv): number {
  const started = process.hrtime.bigint();
  execFileSync('java', ['-version'], { env, stdio: 'ignore' });
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/** Median of 20 starts each, alternating, after one warm-up start each. */
export function caseNativeJavaStartup(records: ResultRecord[], log: Log): void {
  const plain = { ...process.env, JAVA_TOOL_OPTIONS: '' };
  const loaded = { ...plain, LD_PRELOAD: nativeLibraryPath(), DETOUR_PROXY: '127.0.0.1:9' };
  javaStartMs(plain);
  javaStartMs(loaded);
  const without: number[] = [];
  const withLibrary: number[] = [];
  for (let round = 0; round < 20; round++) {
    without.push(javaStartMs(plain));
    withLibrary.push(javaStartMs(loaded));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[10] ?? Number.NaN;
  log(
    `  case 9: java -version without the library ${median(without).toFixed(1)} ms, with it ${median(withLibrary).toFixed(1)} ms (median)`,
  );
  records.push(
    makeRecord({
      case: '9 native layer start-up',
      subject: 'java -version with LD_PRELOAD',
      reference: 'java -version',
      metric: 'wall time',
      unit: 'ms',
      subjectSamples: withLibrary,
      referenceSamples: without,
      goal: { on: 'added', op: '<=', target: 30, text: '<= +30 ms' },
      notes: 'LD_PRELOAD=libdetour.so and DETOUR_PROXY set; 20 starts each, alternating',
    }),
  );
}
