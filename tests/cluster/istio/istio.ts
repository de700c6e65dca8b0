import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { kubeconfigPath, kubectl } from '../cluster.ts';
import { ClusterError } from '../errors.ts';
import { logDir, pidDir } from '../paths.ts';
import { memoryMiB, runningPid, stopProcess } from '../processes.ts';
import { waitFor } from '../wait.ts';
import { injectionConfig, injectionValues, injectionWebhookManifest } from './injection.ts';
import { istioBinaryPath, istiodDir, istioVersion, requireIstioBinaries } from './paths.ts';
import { istiodArgs, istiodEnv, istiodPorts, istioNamespace, meshConfigYaml } from './settings.ts';

/**
 * istiod (pilot-discovery) as a host process of the local cluster, beside the apiserver: loopback
 * ports only, tracked by a pid file in the cluster's pid directory (so the cluster's own
 * runningPid/stopProcess work on it), output in <cluster logs>/istiod.log.
 */
export const istiod = { name: 'istiod', binary: istioBinaryPath('pilot-discovery') } as const;
export const istiodLog = join(logDir, 'istiod.log');
export const istiodDebugUrl = `http://127.0.0.1:${istiodPorts.http}`;

export interface IstiodOptions {
  log?: (line: string) => void;
  /** Kubeconfig istiod uses (default: the cluster's admin kubeconfig). */
  kubeconfig?: string;
  timeoutMs?: number;
  /** Environment overrides (experiments: e.g. PILOT_ENABLE_ALPN_FILTER=true to see Envoy's NACK). */
  env?: Record<string, string>;
  /** YAML appended to the mesh config (e.g. a defaultProviders.metrics block). */
  meshConfigExtra?: string;
}

/** GET on istiod's plain-HTTP debug port; resolves with status and body. */
export function istiodGet(path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${istiodDebugUrl}${path}`, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`istiod ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** kubectl apply (server-side) as admin, from a manifest string; throws CLUSTER_COMMAND_FAILED on error. */
export async function applyManifest(manifest: string): Promise<string> {
  const result = await kubectl(
    'admin',
    ['apply', '--server-side', '--force-conflicts', '--field-manager=detour-mesh', '-f', '-'],
    manifest,
  );
  if (result.code !== 0) {
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `kubectl apply failed:\n${result.stderr}\n${manifest}`);
  }
  return result.stdout;
}

/** kubectl delete --ignore-not-found as admin, from a manifest string. */
export async function deleteManifest(manifest: string): Promise<void> {
  const result = await kubectl(
    'admin',
    ['delete', '--ignore-not-found', '--wait=false', '-f', '-'],
    manifest,
  );
  if (result.code !== 0) {
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `kubectl delete failed:\n${result.stderr}`);
  }
}

/** Runs kubectl as admin and returns stdout; throws CLUSTER_COMMAND_FAILED on a non-zero exit. */
export async function kubectlAdmin(args: string[], input?: string): Promise<string> {
  const result = await kubectl('admin', args, input);
  if (result.code !== 0) {
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
  }
  return result.stdout;
}

function lastLines(file: string, count = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Writes istiod's working directory: mesh config, mesh networks, injector config and values. */
function writeIstiodFiles(meshConfigExtra = ''): void {
  const config = join(istiodDir, 'etc', 'istio', 'config');
  const inject = join(istiodDir, 'var', 'lib', 'istio', 'inject');
  mkdirSync(config, { recursive: true });
  mkdirSync(inject, { recursive: true });
  writeFileSync(join(config, 'mesh'), meshConfigYaml() + meshConfigExtra);
  writeFileSync(join(config, 'meshNetworks'), 'networks: {}\n');
  writeFileSync(join(inject, 'config'), injectionConfig());
  writeFileSync(join(inject, 'values'), JSON.stringify(injectionValues(), null, 2));
}

/** The pid of the running istiod, or undefined. */
export function istiodPid(): number | undefined {
  return runningPid(pidDir, istiod);
}

export function istiodStatus(): { name: string; pid?: number; rssMiB?: number; peakMiB?: number } {
  const pid = istiodPid();
  if (pid === undefined) return { name: istiod.name };
  const memory = memoryMiB(pid);
  return { name: istiod.name, pid, rssMiB: memory?.rss, peakMiB: memory?.peak };
}

/**
 * Waits until istiod answers /ready and has put its root certificate into the injection webhook's
 * caBundle (before that, the apiserver cannot verify https://127.0.0.1:15017 and pod creation in an
 * injected namespace fails).
 */
export async function waitIstiodReady(timeoutMs = 120_000): Promise<void> {
  await waitFor(
    `istiod ready at ${istiodDebugUrl}/ready`,
    async () => {
      if (istiodPid() === undefined) {
        throw new ClusterError(
          'CLUSTER_START_FAILED',
          `istiod exited; last lines of ${istiodLog}:\n${lastLines(istiodLog)}`,
        );
      }
      return (await istiodGet('/ready', 2000)).status === 200;
    },
    { timeoutMs },
  ).catch((error: unknown) => {
    if (error instanceof ClusterError && error.code === 'CLUSTER_TIMEOUT') {
      throw new ClusterError('CLUSTER_START_FAILED', `${error.message}\n${lastLines(istiodLog)}`);
    }
    throw error;
  });
  await waitFor(
    'istiod to patch the caBundle of MutatingWebhookConfiguration istio-sidecar-injector',
    async () => {
      const bundle = await kubectlAdmin([
        'get',
        'mutatingwebhookconfiguration',
        'istio-sidecar-injector',
        '-o',
        'jsonpath={.webhooks[0].clientConfig.caBundle}',
      ]);
      return bundle.length > 0;
    },
    { timeoutMs: 30_000 },
  );
}

/**
 * Starts istiod against the running cluster unless it already runs: namespace istio-system, the
 * injection webhook configuration, then the process. Idempotent. Returns its pid and whether this
 * call started it.
 */
export async function startIstiod(options: IstiodOptions = {}): Promise<{ pid: number; started: boolean }> {
  const log = options.log ?? (() => {});
  requireIstioBinaries();
  const existing = istiodPid();
  if (existing !== undefined) {
    log(`istiod already running (pid ${existing})`);
    await waitIstiodReady(options.timeoutMs);
    return { pid: existing, started: false };
  }
  const kubeconfig = options.kubeconfig ?? kubeconfigPath('admin');
  await applyManifest(
    `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${istioNamespace}\n---\n${injectionWebhookManifest()}`,
  );
  writeIstiodFiles(options.meshConfigExtra);
  mkdirSync(pidDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const out = openSync(istiodLog, 'a');
  const child = spawn(istiod.binary, istiodArgs(kubeconfig), {
    cwd: istiodDir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      ...istiodEnv(kubeconfig),
      ...options.env,
    },
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  if (child.pid === undefined)
    throw new ClusterError('CLUSTER_START_FAILED', `could not start ${istiod.binary}`);
  child.unref();
  writeFileSync(join(pidDir, `${istiod.name}.pid`), `${child.pid}\n`);
  log(`istiod ${istioVersion} pid ${child.pid}, log ${istiodLog}`);
  const spawned = performance.now();
  await waitIstiodReady(options.timeoutMs);
  log(`istiod ready (and webhook caBundle patched) in ${((performance.now() - spawned) / 1000).toFixed(1)}s`);
  return { pid: child.pid, started: true };
}

/** Stops istiod (SIGTERM, then SIGKILL); returns its pid, or undefined when it was not running. */
export async function stopIstiod(): Promise<number | undefined> {
  // istiod drains for --shutdownDuration (10 s) on SIGTERM before it exits.
  return stopProcess(pidDir, istiod, 15_000);
}

/** istiod's /debug/syncz: one entry per connected proxy and xDS type, with sent/acked nonces. */
export interface SyncStatus {
  proxy: string;
  type?: string;
  sent?: string;
  acked?: string;
  [key: string]: unknown;
}

export async function syncz(): Promise<SyncStatus[]> {
  const res = await istiodGet('/debug/syncz');
  if (res.status !== 200)
    throw new ClusterError('CLUSTER_COMMAND_FAILED', `/debug/syncz: HTTP ${res.status}`);
  return JSON.parse(res.body) as SyncStatus[];
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes the Kubernetes namespaces (detour-mesh-<pid>, detour-img-<pid>) of mesh test runs that died.
 * One still terminating (its run deleted it with --wait=false) may be gone between the list and the delete.
 */
export async function deleteStaleTestNamespaces(): Promise<string[]> {
  const stale = (await kubectlAdmin(['get', 'namespaces', '-o', 'name']))
    .split('\n')
    .map((line) => /^namespace\/(detour-(?:mesh|img)-(\d+))$/.exec(line.trim()))
    .filter((m): m is RegExpExecArray => m !== null && !isRunning(Number(m[2])))
    .map((m) => m[1] as string);
  if (stale.length > 0)
    await kubectlAdmin(['delete', 'namespace', '--ignore-not-found', '--wait=false', ...stale]);
  return stale;
}
