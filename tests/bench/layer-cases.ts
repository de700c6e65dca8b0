/**
 * Issue 5's benchmarks: what the Node layer costs a local process. Case 5: start-up of `node -e 0`
 * with the layer preloaded vs without. Case 6: connection set-up (connect() to the echo of the
 * first byte) through the layer, the CLI and the tunnel vs a direct loopback connection.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { nodeOptionsWithLayer } from '@detour/layer';
import { start, waitExit } from './lib/processes.ts';
import { makeRecord, type ResultRecord } from './lib/results.ts';

function startupMs(env: NodeJS.ProcessEnv, times: number): number[] {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = process.hrtime.bigint();
    execFileSync(process.execPath, ['-e', '0'], { env });
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return samples;
}

/** Median of 20 starts each, alternating, after a warm-up that fills the compile cache. */
export function caseLayerStartup(records: ResultRecord[], log: (line: string) => void): void {
  const cache = mkdtempSync(join(os.tmpdir(), 'detour-compile-cache-'));
  const plain = { ...process.env, NODE_OPTIONS: '' };
  const layered = {
    ...process.env,
    NODE_OPTIONS: nodeOptionsWithLayer(''),
    DETOUR_PROXY: '127.0.0.1:9',
    NODE_COMPILE_CACHE: cache,
  };
  startupMs(layered, 2);
  const without: number[] = [];
  const withLayer: number[] = [];
  for (let round = 0; round < 20; round++) {
    without.push(...startupMs(plain, 1));
    withLayer.push(...startupMs(layered, 1));
  }
  log(
    `  case 5: node -e 0 without the layer ${without.sort((a, b) => a - b)[10]?.toFixed(1)} ms, with it ${withLayer.sort((a, b) => a - b)[10]?.toFixed(1)} ms (median)`,
  );
  records.push(
    makeRecord({
      case: '5 layer start-up',
      subject: 'node -e 0 with the layer',
      reference: 'node -e 0',
      metric: 'wall time',
      unit: 'ms',
      subjectSamples: withLayer,
      referenceSamples: without,
      goal: { on: 'added', op: '<=', target: 30, text: '<= +30 ms' },
      notes:
        'NODE_OPTIONS=--require <layer>, DETOUR_PROXY set, NODE_COMPILE_CACHE warm (as detour exec sets it); 20 starts each, alternating',
    }),
  );
}

/** `connect` mode of egress-peer: 300 sequential connections, direct and under `detour exec`. */
export async function caseLayerConnect(
  records: ResultRecord[],
  spec: { root: string; peer: string; holdPort: number; sessionArgs: string[]; runs: number },
  log: (line: string) => void,
): Promise<void> {
  const count = 300;
  const results = { direct: [] as number[][], layer: [] as number[][] };
  for (let run = 0; run < spec.runs; run++) {
    for (const via of ['direct', 'layer'] as const) {
      const args = [spec.peer, 'connect', '127.0.0.1', String(spec.holdPort), String(count)];
      const p =
        via === 'direct'
          ? start('connect-direct', process.execPath, args, { cwd: spec.root })
          : start(
              'connect-layer',
              process.execPath,
              ['cli/src/main.ts', 'exec', ...spec.sessionArgs, '--', process.execPath, ...args],
              {
                cwd: spec.root,
              },
            );
      const code = await waitExit(p, 120_000);
      const line = /BENCHJSON (.*)/.exec(p.output())?.[1];
      if (code !== 0 || !line)
        throw new Error(`case 6: ${p.name} exited with ${code}:\n${p.output().slice(-3000)}`);
      const { p50Ms, p99Ms } = JSON.parse(line) as { p50Ms: number; p99Ms: number };
      results[via].push([p50Ms, p99Ms]);
      log(
        `  case 6 run ${run + 1}/${spec.runs} ${via}: p50 ${p50Ms.toFixed(2)} ms, p99 ${p99Ms.toFixed(2)} ms`,
      );
    }
  }
  for (const [index, metric] of ['p50 latency', 'p99 latency'].entries()) {
    records.push(
      makeRecord({
        case: '6 connection set-up through the layer',
        subject: 'layer -> CLI -> tunnel -> agent',
        reference: 'direct loopback',
        metric,
        unit: 'ms',
        subjectSamples: results.layer.map((sample) => sample[index] as number),
        referenceSamples: results.direct.map((sample) => sample[index] as number),
        goal: null,
        notes: `${count} sequential connections per run, connect() to the echo of the first byte; the destination is included in the egress policy so it leaves from the agent`,
      }),
    );
  }
}
