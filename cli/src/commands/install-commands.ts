import type { ParseArgsOptionsConfig } from 'node:util';
import { detectMesh, kubeClient } from '@detour/mesh-adapters';
import { DetourError, InvalidInputError } from '@detour/router/errors';
import type { KubeConfig } from '@kubernetes/client-node';
import { parseFlags } from '../command-flags.ts';
import { agentManifests } from '../install/agent-manifests.ts';
import { errorText, formatCheck, runDoctor } from '../install/doctor.ts';
import {
  applyObjects,
  isPodReady,
  listPods,
  meshIdentity,
  uninstallAgent,
  waitForRollout,
} from '../install/installer.ts';
import { loadKubeConfig } from '../kube/kubeconfig.ts';
import { discoverMesh } from '../kube/mesh-discovery.ts';
import { defaultNamespace } from '../options.ts';
import { createReporter } from '../reporter.ts';
import { versionInfo } from '../version.ts';

function parse<T extends ParseArgsOptionsConfig>(argv: readonly string[], options: T) {
  return parseFlags(argv, options).values;
}

/** Runs `body` against the cluster; a cluster that does not answer is named with its context and server. */
async function againstCluster<T>(kc: KubeConfig, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof DetourError) throw error;
    throw new DetourError(
      'DETOUR_KUBE_UNREACHABLE',
      `the cluster of context ${kc.getCurrentContext()} (${kc.getCurrentCluster()?.server}) did not answer: ${errorText(error)}; check KUBECONFIG, or run \`detour doctor\``,
      { cause: error },
    );
  }
}

function seconds(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!(n > 0 && n <= 3600))
    throw new InvalidInputError(
      'DETOUR_BAD_OPTION',
      `--${flag} ${JSON.stringify(value)}: expected seconds, 1-3600`,
    );
  return n;
}

/** `--replicas N`: 1-20 agent pods (the manifest's 2 without it). */
function replicaCount(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(Number.isInteger(n) && n >= 1 && n <= 20))
    throw new InvalidInputError(
      'DETOUR_BAD_OPTION',
      `--replicas ${JSON.stringify(value)}: expected a whole number of agent pods, 1-20 (2 by default: one may go while the other serves)`,
    );
  return n;
}

/**
 * `detour install [-n NS] [--image REF] [--replicas N] [--timeout S] [--json]`: manifests/agent into the namespace
 * with the image, waits for the rollout, then says what runs: version and mesh identity. Idempotent.
 */
export async function installCommand(argv: readonly string[]): Promise<number> {
  const values = parse(argv, {
    namespace: { type: 'string', short: 'n' },
    image: { type: 'string' },
    replicas: { type: 'string' },
    timeout: { type: 'string' },
    json: { type: 'boolean' },
  });
  const reporter = createReporter(values.json ?? false);
  const namespace = values.namespace ?? defaultNamespace();
  const versions = versionInfo();
  const image = values.image ?? versions.agentImage;
  const replicas = replicaCount(values.replicas);
  const kc = loadKubeConfig();
  const client = kubeClient(kc, { fieldManager: 'detour-install' });
  const objects = agentManifests({ namespace, image, ...(replicas !== undefined ? { replicas } : {}) });
  reporter.step('install.start', `installing the detour agent ${image} into ${namespace}`, {
    namespace,
    image,
  });
  for (const { ref, outcome } of await againstCluster(kc, () => applyObjects(client, objects)))
    reporter.step('install.applied', `${ref.kind} ${namespace}/${ref.name} ${outcome}`, { ...ref, outcome });
  const deployment = objects.find((o) => o.kind === 'Deployment');
  const name = deployment?.metadata.name ?? 'detour-agent';
  await waitForRollout(client, { namespace, name }, reporter, seconds(values.timeout, 180, 'timeout') * 1000);
  const selector =
    (deployment?.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector
      ?.matchLabels ?? {};
  const pod = (await listPods(client, namespace, selector)).find(isPodReady);
  const identity = pod ? meshIdentity(pod) : { sidecar: false };
  const detection = detectMesh(await discoverMesh(kc, namespace));
  reporter.step(
    'install.done',
    `agent ${namespace}/${name} ready: image ${image} (CLI ${versions.version}, tunnel protocol v${versions.tunnelProtocol}); ${
      identity.sidecar
        ? `sidecar injected, mesh identity ${identity.spiffe}`
        : `no sidecar (mesh ${detection.mesh}: ${detection.reason})`
    }`,
    { namespace, image, ...versions, ...identity, mesh: detection.mesh },
  );
  if (!identity.sidecar && detection.mesh !== 'service')
    reporter.warn(
      'install.no-sidecar',
      `the mesh routes to the agent through its sidecar only: check the injection of namespace ${namespace} and restart the agent (kubectl rollout restart -n ${namespace} deployment/${name})`,
    );
  return 0;
}

/** `detour uninstall [-n NS] [--force] [--json]`: removes what install created; refuses while sessions live. */
export async function uninstallCommand(argv: readonly string[]): Promise<number> {
  const values = parse(argv, {
    namespace: { type: 'string', short: 'n' },
    force: { type: 'boolean' },
    timeout: { type: 'string' },
    json: { type: 'boolean' },
  });
  const reporter = createReporter(values.json ?? false);
  const namespace = values.namespace ?? defaultNamespace();
  const kc = loadKubeConfig();
  const result = await againstCluster(kc, () =>
    uninstallAgent({
      client: kubeClient(kc, { fieldManager: 'detour-install' }),
      namespace,
      force: values.force ?? false,
      reporter,
      timeoutMs: seconds(values.timeout, 120, 'timeout') * 1000,
    }),
  );
  reporter.step(
    'uninstall.done',
    result.removed.length
      ? `removed the detour agent from ${namespace} (${result.removed.length} object(s), their pods gone)`
      : `nothing to remove: no object of detour install in ${namespace}`,
    { namespace, removed: result.removed, endedSessions: result.endedSessions },
  );
  return 0;
}

/** `detour doctor [-n NS] [--agent-service NAME] [--json]`: one line per check, exit 1 when one fails. */
export async function doctorCommand(argv: readonly string[]): Promise<number> {
  const values = parse(argv, {
    namespace: { type: 'string', short: 'n' },
    'agent-service': { type: 'string' },
    json: { type: 'boolean' },
  });
  const namespace = values.namespace ?? defaultNamespace();
  const kc = loadKubeConfig();
  const checks = await runDoctor({
    kc,
    client: kubeClient(kc),
    namespace,
    agentService: values['agent-service'] ?? 'detour-agent',
    ...(values.json ? {} : { onCheck: (c) => process.stdout.write(`${formatCheck(c)}\n`) }),
  });
  const failed = checks.filter((c) => c.status === 'fail');
  if (values.json)
    process.stdout.write(`${JSON.stringify({ namespace, ok: failed.length === 0, checks })}\n`);
  else
    process.stdout.write(
      failed.length === 0
        ? `detour doctor: ready for sessions in ${namespace}\n`
        : `detour doctor: ${failed.length} check(s) failed: ${failed.map((c) => c.name).join(', ')}\n`,
    );
  return failed.length === 0 ? 0 : 1;
}
