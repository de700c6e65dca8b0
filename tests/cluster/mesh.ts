// node tests/cluster/mesh.ts up [--no-build] | down | status | sample [--no-build]
//
// Tier 3 wired onto the tier-2 cluster, from the outside: this module only calls the APIs of
// tests/cluster (tier 1/2) and tests/cluster/istio (istiod, its Service, the proxy image), so neither
// needs to know the other. `up`: build what is missing (Istio binaries, the sidecar image, the sample
// and agent images), start the cluster with a node, import the images, start istiod on the host's
// loopback, and make it reachable from pods as istiod.istio-system.svc:15012 (a selector-less
// Service + EndpointSlice on the node address, and a relay pair node netns -> Unix socket -> host
// loopback). `sample`: the staging namespace (frontend -> orders -> payments, v2 deployments, a caller
// pod, the detour agent). `down`: istiod and the relays first, then the cluster.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../support/processes.ts';
import { clusterDown, clusterStatus, clusterUp, kubectl, runScript, step } from './cluster.ts';
import { ClusterError, runCommand } from './errors.ts';
import { applyManifest, istiodStatus, startIstiod, stopIstiod } from './istio/istio.ts';
import { istiodServiceManifest } from './istio/istiod-service.ts';
import { missingMeshParts } from './istio/paths.ts';
import { istiodPorts } from './istio/settings.ts';
import { exposeSpecs, netnsExists, nodeIp, sock } from './node.ts';
import { binaryPath, imageDir, logDir, pidDir } from './paths.ts';
import { runningPid, startProcess, stopOutdatedForwarder, stopProcess } from './processes.ts';
import { waitFor } from './wait.ts';

type Log = (line: string) => void;

const buildDir = join(import.meta.dirname, 'build', 'istio');
export const sampleBuildScript = join(import.meta.dirname, 'sample', 'build-images.sh');
/** Archives this module builds and imports into the node (besides tier 2's own). */
export const meshImages = {
  proxy: () => proxyImageFile(),
  sample: join(imageDir, 'sample.oci.tar'),
  agent: join(imageDir, 'agent.oci.tar'),
};

function proxyImageFile(): string | undefined {
  if (!existsSync(imageDir)) return undefined;
  const file = readdirSync(imageDir).find((f) => f.startsWith('istio-proxy-') && f.endsWith('.tar'));
  return file ? join(imageDir, file) : undefined;
}

/**
 * Builds what the mesh needs: Istio's binaries and files (only when missing: ~20 min cold), the
 * sidecar image (a no-op when its archive exists), the sample and agent images (always, ~2 s, so
 * the agent image holds the checkout's code).
 */
export async function meshBuild(log: Log = console.log): Promise<void> {
  const missing = missingMeshParts();
  if (missing.length > 0) {
    await step(log, `build Istio (${missing.length} parts missing)`, () =>
      runScript(log, join(buildDir, 'build.sh')),
    );
  }
  await step(log, 'sidecar image', () => runScript(log, join(buildDir, 'proxy-image.sh')));
  await step(log, 'sample and agent images', () => runScript(log, sampleBuildScript));
}

/**
 * Imports image archives into the running node's containerd (tier 2 imports every archive when
 * containerd starts; images built after that need this). Returns the manifest digest of each.
 */
export async function importIntoNode(files: string[]): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  for (const file of files) {
    const result = await run(
      [binaryPath('ctr'), '--address', sock.containerd, '-n', 'k8s.io', 'images', 'import', file],
      { timeoutMs: 120_000, what: `ctr images import ${file}` },
    );
    if (result.code !== 0) {
      throw new ClusterError('CLUSTER_COMMAND_FAILED', `ctr images import ${file} failed:\n${result.stderr}`);
    }
    digests.set(file, archiveDigest(file));
  }
  return digests;
}

/** The manifest digest an OCI archive's index.json names (read without unpacking: tar -xO). */
export function archiveDigest(file: string): string {
  const index = JSON.parse(runSync('tar', ['-xOf', file, 'index.json'])) as {
    manifests: Array<{ digest: string }>;
  };
  return index.manifests[0]?.digest ?? '';
}

function runSync(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
}

/** The relay pair that carries node-netns 198.18.0.2:15012 to istiod on 127.0.0.1:15012. */
export function istiodRelays() {
  return exposeSpecs('istiod', istiodPorts.secureGrpc, istiodPorts.secureGrpc);
}

export interface MeshUpOptions {
  log?: Log;
  /** Build missing parts and the images (default true); false fails when something is missing. */
  build?: boolean;
}

export interface MeshUpResult {
  /** What this call started (cluster components, istiod, relays). */
  started: string[];
  seconds: number;
}

/** Tier 3 on tier 2: cluster with a node, images imported, istiod running and reachable from pods. */
export async function meshUp(options: MeshUpOptions = {}): Promise<MeshUpResult> {
  const log = options.log ?? console.log;
  const t0 = performance.now();
  if (options.build !== false) await meshBuild(log);
  else if (missingMeshParts().length > 0) {
    throw new ClusterError(
      'CLUSTER_BINARIES_MISSING',
      `Istio is not built (${missingMeshParts().join(', ')}): run node tests/cluster/mesh.ts up`,
    );
  }
  const { started } = await clusterUp({ log, tier: 2, build: options.build !== false });
  // containerd imports every archive when it starts; a node that already ran needs the new ones.
  if (!started.includes('containerd')) {
    await step(log, 'import sidecar, sample and agent images', async () => {
      const files = [meshImages.proxy(), meshImages.sample, meshImages.agent].filter(
        (file): file is string => file !== undefined && existsSync(file),
      );
      await importIntoNode(files);
      log(`  imported ${files.map((f) => f.slice(imageDir.length + 1)).join(', ')}`);
    });
  }
  const istiod = await step(log, 'istiod', () => startIstiod({ log }));
  if (istiod.started) started.push('istiod');
  await step(log, 'istiod Service and relay for pods', async () => {
    await applyManifest(istiodServiceManifest(nodeIp));
    for (const spec of istiodRelays()) {
      const replaced = await stopOutdatedForwarder(pidDir, spec);
      const { pid, started: fresh } = startProcess(pidDir, logDir, spec);
      if (fresh && !replaced) started.push(spec.name);
      log(`  ${spec.name} pid ${pid}${fresh ? '' : ' (already running)'}`);
    }
    await waitFor('istiod relays', () => istiodRelays().every((s) => runningPid(pidDir, s) !== undefined), {
      timeoutMs: 5000,
    });
  });
  const seconds = (performance.now() - t0) / 1000;
  log(`mesh up in ${seconds.toFixed(1)}s`);
  return { started, seconds };
}

/** istiod and its relays, then the cluster (node included). */
export async function meshDown(options: { log?: Log } = {}): Promise<void> {
  const log = options.log ?? console.log;
  const pid = await stopIstiod();
  if (pid !== undefined) log(`stopped istiod (pid ${pid})`);
  for (const spec of istiodRelays()) {
    const stopped = await stopProcess(pidDir, spec);
    if (stopped !== undefined) log(`stopped ${spec.name} (pid ${stopped})`);
  }
  await clusterDown({ log });
}

/** Cluster components, istiod and its relays, each with its pid (undefined when stopped). */
export async function meshStatus(): Promise<Array<{ name: string; pid?: number; rssMiB?: number }>> {
  const relays = istiodRelays().map((spec) => ({ name: spec.name, pid: runningPid(pidDir, spec) }));
  return [...(await clusterStatus()), istiodStatus(), ...relays];
}

/** True when everything meshUp starts runs (cluster with a node, istiod, relays). */
export async function meshRunning(): Promise<boolean> {
  if (!netnsExists()) return false;
  return (await meshStatus()).every((c) => c.pid !== undefined);
}

/** kubectl as admin that throws on failure (the cluster's kubectl helper never throws). */
export async function kubectlOk(args: string[], input?: string): Promise<string> {
  const result = await kubectl('admin', args, input);
  if (result.code !== 0) {
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
  }
  return result.stdout;
}

async function main(): Promise<number> {
  const [command, ...flags] = process.argv.slice(2);
  switch (command) {
    case 'up':
      await meshUp({ build: !flags.includes('--no-build') });
      return 0;
    case 'down':
      await meshDown();
      return 0;
    case 'status': {
      let allUp = true;
      for (const c of await meshStatus()) {
        if (c.pid === undefined) allUp = false;
        console.log(`${c.name.padEnd(24)} ${c.pid === undefined ? 'stopped' : `running pid ${c.pid}`}`);
      }
      return allUp ? 0 : 3;
    }
    case 'sample': {
      // Rebuilt and re-imported each time, so the pods (rolled by digest) run this checkout's code.
      if (!flags.includes('--no-build')) {
        await step(console.log, 'sample and agent images', () => runScript(console.log, sampleBuildScript));
        await importIntoNode([meshImages.sample, meshImages.agent]);
      }
      const { deploySample } = await import('./sample/sample.ts');
      await deploySample({ log: console.log });
      return 0;
    }
    default:
      console.error(
        'usage: node tests/cluster/mesh.ts up [--no-build] | down | status | sample [--no-build]',
      );
      return 2;
  }
}

if (import.meta.main) runCommand(main);
