/**
 * Issue 4's benchmark: time from a session's route write to the route being live, per mesh adapter,
 * on the local cluster with Istio (`npm run bench:route`). "Live" is what detour itself checks before
 * it says ready: the agent's probe, sent through its own sidecar with the session's header, comes
 * back to the agent. Five sessions per adapter; writes tests/bench/route-live-results.json.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execOrdersArgs, interrupt, startDetour, useSample } from '../e2e/support.ts';
import { makeRecord, type ResultRecord, table } from './lib/results.ts';

const sessionsPerAdapter = 5;
const out = fileURLToPath(new URL('route-live-results.json', import.meta.url));

async function routeLiveMs(mesh: string, session: number): Promise<number> {
  const cli = startDetour(
    execOrdersArgs(`bench-${session}`, 18999, ['--mesh', mesh, '--json'], ['sleep', '60']),
  );
  const deadline = Date.now() + 60_000;
  let live: RegExpExecArray | null = null;
  while (!live && !cli.status && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    live = /"event":"route.live".*?"ms":(\d+)/.exec(cli.stderr);
  }
  interrupt(cli);
  await cli.exited;
  if (!live) throw new Error(`no route.live from detour (--mesh ${mesh}):\n${cli.tail(20)}`);
  if (!/"event":"route.reverted"/.test(cli.stderr))
    throw new Error(`detour left its route (--mesh ${mesh}):\n${cli.tail(20)}`);
  return Number(live[1]);
}

await useSample((line) => process.stderr.write(`${line}\n`));
const records: ResultRecord[] = [];
for (const mesh of ['istio', 'istio-envoyfilter', 'gateway-api']) {
  const samples: number[] = [];
  for (let i = 0; i < sessionsPerAdapter; i++) {
    samples.push(await routeLiveMs(mesh, i));
    process.stderr.write(
      `  --mesh ${mesh} session ${i + 1}/${sessionsPerAdapter}: route live ${samples.at(-1)} ms after the write\n`,
    );
  }
  records.push(
    makeRecord({
      case: '7 route write to live',
      subject: `--mesh ${mesh}`,
      reference: null,
      metric: 'time to live',
      unit: 'ms',
      subjectSamples: samples,
      referenceSamples: null,
      goal: null,
      notes: `${sessionsPerAdapter} sessions; from the route write returning to the agent's probe (through its sidecar, with the session header) coming back to the agent; istiod's push debounce is 100 ms of it`,
    }),
  );
}
writeFileSync(out, `${JSON.stringify(records, null, 2)}\n`);
process.stdout.write(`${table(records)}\nresults: ${out}\n`);
