/**
 * The cluster demo (scripts/demo-cluster.sh): detour against the local Kubernetes cluster with Istio.
 * Brings the mesh up (tier 2 node + istiod; builds what is missing), deploys the sample system in
 * `staging` (frontend -> orders -> payments, real sidecars, mTLS) and the detour agent, then runs the
 * developer's command:
 *   KUBECONFIG=<developer> detour exec --target deploy/orders -n staging --header x-dev=dev-a \
 *     --port 8080:<local> -- node tests/cluster/sample/orders.ts --port <local>
 * A request from the caller pod to frontend with x-dev: dev-a must be answered by the local orders
 * (whose call to payments leaves from the agent), one without it by the real pods; after Ctrl-C the
 * VirtualService must be exactly as before and every request must reach the real pods.
 * Stops the mesh again if it started it. Exits 0 only if every check held.
 */
import { isDeepStrictEqual } from 'node:util';
import { meshDown, meshRunning } from '../cluster/mesh.ts';
import { waitFor } from '../cluster/wait.ts';
import {
  callerGet,
  execOrdersArgs,
  getVirtualService,
  interrupt,
  routingState,
  spiffe,
  startDetour,
  useSample,
} from '../e2e/support.ts';
import type { ManagedProcess } from '../support/processes.ts';

const say = (text: string) => process.stdout.write(`${text}\n`);
const localPort = 18180;
let right = true;

function check(ok: boolean, text: string): void {
  right &&= ok;
  say(`${ok ? '✔' : '✘'} ${text}`);
}

async function ask(headers: Record<string, string>) {
  const answer = await callerGet('http://frontend:8080/', headers);
  const orders = answer.body.called?.[0]?.body;
  const payments = orders?.called?.[0]?.body;
  const shown = Object.entries(headers)
    .map(([n, v]) => `-H '${n}: ${v}' `)
    .join('');
  say(`\n$ kubectl exec caller -- curl ${shown}http://frontend:8080/   (inside the mesh)`);
  say(
    `  frontend ${answer.body.pod} -> orders ${orders?.version} (${orders?.pod}) -> payments ${payments?.pod} ` +
      `[payments saw the call from ${payments?.from ?? '?'}]`,
  );
  return { orders, payments };
}

let cli: ManagedProcess | undefined;
// Ctrl-C on the demo: end the detour session (its own process group) so its route is removed.
process.once('SIGINT', () => {
  void (cli?.stop(10_000) ?? Promise.resolve()).then(() => process.exit(130));
});

async function demo(): Promise<void> {
  const wasRunning = await meshRunning();
  try {
    say('▸ local cluster with Istio (tier 2 node, istiod, sidecars) and the sample system in staging');
    await useSample((line) => say(`  ${line}`));
    const before = routingState(await getVirtualService('orders'));
    say(`  VirtualService staging/orders routes: ${before.spec.http.map((r) => r.name).join(', ')}`);

    const command = execOrdersArgs('dev-a', localPort);
    say(`\n▸ KUBECONFIG=<developer> detour ${command.join(' ').replace(process.execPath, 'node')}`);
    const started = Date.now();
    cli = startDetour(command);
    const running = cli;
    running.child.stderr?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) say(`  ${line}`);
    });
    await Promise.race([
      waitFor(
        'the local orders app to answer x-dev: dev-a',
        async () =>
          (await callerGet('http://frontend:8080/', { 'x-dev': 'dev-a' })).body.called?.[0]?.body?.version ===
          'local',
        { timeoutMs: 90_000, intervalMs: 500 },
      ),
      running.exited.then((status) => {
        throw new Error(`detour exited (${JSON.stringify(status)})`);
      }),
    ]);
    say(`  (first request served locally ${Date.now() - started} ms after detour started)`);

    const dev = await ask({ 'x-dev': 'dev-a' });
    check(dev.orders?.pod === 'laptop', 'with x-dev: dev-a, orders answered from this machine');
    check(
      dev.payments?.from === spiffe('detour-agent'),
      "the local orders' call to payments left from the agent pod",
    );
    const other = await ask({});
    check(
      other.orders?.version === 'v1' && String(other.orders?.pod).startsWith('orders-'),
      'without the header, the real orders pod answered',
    );

    say('\n▸ Ctrl-C');
    interrupt(running);
    await running.exited;
    const after = routingState(await getVirtualService('orders'));
    check(isDeepStrictEqual(after, before), 'VirtualService staging/orders is exactly as before');
    const again = await ask({ 'x-dev': 'dev-a' });
    check(again.orders?.version === 'v1', 'after the session, x-dev: dev-a reaches the real pods again');
  } finally {
    await cli?.stop(10_000);
    if (!wasRunning) {
      say('\n▸ stopping the mesh and the cluster this demo started');
      await meshDown({ log: () => {} });
    }
  }
}

let code = 1;
try {
  await demo();
  code = right ? 0 : 1;
  say(right ? '\ndemo: every request answered by the right side' : '\ndemo: FAILED (see ✘ above)');
} catch (error) {
  say(`\ndemo: FAILED: ${(error as Error).message}`);
}
process.exit(code);
