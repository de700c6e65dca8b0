// A namespace of a suite's own (istio-injection=enabled, like staging) holding the sample's orders
// app, the agent installed there with `detour install`, and steals of its orders: for suites that
// change what the whole namespace sees (an install, a PeerAuthentication) without touching staging.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { kubectl } from '../cluster/cluster.ts';
import { applyManifest } from '../cluster/istio/istio.ts';
import { archiveDigest, meshImages } from '../cluster/mesh.ts';
import { repoRoot } from '../cluster/paths.ts';
import { deployment, list, service, serviceAccount } from '../cluster/sample/sample.ts';
import { freePort } from '../support/ports.ts';
import { type ManagedProcess, run } from '../support/processes.ts';
import { callerGet, execOrdersArgs, startDetour, whenServing } from './support.ts';

const cli = join(repoRoot, 'cli', 'src', 'main.ts');

/** `detour <args>` to completion with a kubeconfig; the JSON lines it printed on stderr. */
export async function detourWith(args: string[], kubeconfig: string) {
  const result = await run([process.execPath, cli, ...args], {
    env: { ...process.env, KUBECONFIG: kubeconfig },
    timeoutMs: 240_000,
    cwd: repoRoot,
  });
  const events = result.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { ...result, events };
}

export async function admin(args: string[], input?: string): Promise<string> {
  const result = await kubectl('admin', args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** The app the steals take: the sample's orders, calling payments in staging. */
function ordersApp(namespace: string): string {
  const digest = archiveDigest(meshImages.sample);
  return list([
    serviceAccount('orders', namespace),
    service('orders', namespace),
    deployment('orders', 'v1', digest, { PAYMENTS_URL: 'http://payments.staging:8080/pay' }, namespace),
  ]);
}

/** Creates `namespace` (sidecar injection on) with orders in it, rolled out. */
export async function createAppNamespace(namespace: string): Promise<void> {
  await applyManifest(
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: namespace, labels: { 'istio-injection': 'enabled' } },
    }),
  );
  await applyManifest(ordersApp(namespace));
  await admin(['-n', namespace, 'rollout', 'status', 'deployment/orders', '--timeout=120s']);
}

export const ordersUrl = (namespace: string) => `http://orders.${namespace}:8080/`;

/** Starts `detour exec` on the namespace's orders as the developer; resolves once x-dev: <dev> is answered locally. */
export async function stealIn(namespace: string, dev: string, flags: string[]): Promise<ManagedProcess> {
  const local = await freePort();
  const args = execOrdersArgs(dev, local, ['--json', ...flags]).map((arg) =>
    arg === 'staging' ? namespace : arg,
  );
  return whenServing(
    startDetour(args),
    `x-dev: ${dev} to orders.${namespace} to be answered by the local app`,
    async () => (await callerGet(ordersUrl(namespace), { 'x-dev': dev })).body.pod === 'laptop',
    120_000,
  );
}
