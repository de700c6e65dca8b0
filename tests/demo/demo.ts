/**
 * `npm run demo`: detour on one machine, before the local cluster exists. Three network namespaces
 * stand in for the pod (the agent), the laptop (the CLI and the developer's "local" app under
 * `detour exec`) and the cluster (the "remote" app, i.e. the real pods). A caller in the cluster
 * sends one request with `x-dev: dev-a` and one without; the first must be answered by the local
 * app, the second by the remote one. Everything is torn down at the end, whatever happens.
 * Exits 0 only if both answers were right.
 */
import { inbound, ports, Rig } from '../support/detour.ts';
import { addresses } from '../support/netns.ts';

const say = (text: string) => process.stdout.write(`${text}\n`);

async function demo(rig: Rig): Promise<boolean> {
  say(
    `namespaces: pod=${rig.topology.names.pod} laptop=${rig.topology.names.laptop} cluster=${rig.topology.names.cluster}`,
  );
  say(`▸ remote app (the real pods) in the cluster namespace on ${addresses.cluster}:${ports.remoteApp}`);
  await rig.startApp('cluster', 'remote', { port: ports.remoteApp, host: addresses.cluster });
  say(`▸ agent in the pod namespace: tunnel ${addresses.pod}:${ports.tunnel}, inbound :${ports.inbound}`);
  await rig.startAgent();
  say(
    `▸ detour exec --header x-dev=dev-a --port ${ports.inbound}:${ports.localApp} -- node http-app.ts --name local`,
  );
  await rig.startLocalAppSession('demo-dev-a', 'dev-a', 15_000);

  let right = true;
  for (const [label, dev, expected] of [
    ['with x-dev: dev-a', 'dev-a', 'local'],
    ['without x-dev', undefined, 'remote'],
  ] as const) {
    const result = await rig.curl('cluster', ['-sS', ...inbound('/hello', dev)]);
    const app = result.code === 0 ? (JSON.parse(result.stdout) as { app?: string }).app : undefined;
    const ok = app === expected;
    right &&= ok;
    say(
      `\n$ curl ${dev ? `-H 'x-dev: ${dev}' ` : ''}http://${addresses.pod}:${ports.inbound}/hello   (from the cluster)`,
    );
    say(result.stdout.trim() || result.stderr.trim());
    say(`${ok ? '✔' : '✘'} ${label}: answered by ${app ?? 'nobody'} (expected ${expected})`);
  }
  return right;
}

const rig = new Rig('demo');
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await rig.close();
  process.exit(code);
};
process.once('SIGINT', () => void stop(130));
process.once('SIGTERM', () => void stop(143));
let code = 1;
try {
  code = (await demo(rig)) ? 0 : 1;
  say(
    code === 0
      ? '\ndemo: both requests answered by the right app'
      : '\ndemo: FAILED, an answer came from the wrong app',
  );
} catch (error) {
  process.stderr.write(`demo: FAILED: ${(error as Error).message}\n`);
} finally {
  say('tearing down: stopping processes, removing namespaces');
}
await stop(code);
