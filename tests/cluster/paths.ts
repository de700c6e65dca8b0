import { homedir } from 'node:os';
import { join } from 'node:path';
import { versions } from './versions.ts';

/** Where binaries, CRDs and the running cluster's state live. Same defaults as scripts/cluster-build.sh. */
export const cacheDir = process.env.DETOUR_CACHE ?? join(homedir(), '.cache', 'detour');
export const binDir = join(cacheDir, 'bin');
export const crdDir = join(cacheDir, 'crds');
export const stateDir = process.env.DETOUR_CLUSTER_DIR ?? join(cacheDir, 'cluster');
export const pkiDir = join(stateDir, 'pki');
export const kubeconfigDir = join(stateDir, 'kubeconfig');
export const logDir = join(stateDir, 'logs');
export const pidDir = join(stateDir, 'pids');
export const etcdDataDir = join(stateDir, 'etcd-data');

export const repoRoot = join(import.meta.dirname, '..', '..');
export const buildScript = join(repoRoot, 'scripts', 'cluster-build.sh');

export type Binary =
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kubectl'
  | 'kube-scheduler'
  | 'kubelet'
  | 'kube-proxy'
  | 'containerd'
  | 'containerd-shim-runc-v2'
  | 'ctr';

export function binaryPath(name: Binary): string {
  const version =
    name === 'etcd'
      ? versions.etcd
      : name === 'containerd' || name === 'containerd-shim-runc-v2' || name === 'ctr'
        ? versions.containerd
        : versions.kubernetes;
  return join(binDir, `${name}-${version}`);
}

export const tier2Binaries: readonly Binary[] = [
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
  'containerd',
  'containerd-shim-runc-v2',
  'ctr',
];
export const nodeDir = join(stateDir, 'node');
export const imageDir = join(cacheDir, 'images');

export const tier1Binaries: readonly Binary[] = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kubectl',
];

export function crdFiles(): string[] {
  return [
    join(crdDir, `istio-api-${versions.istioApi}.yaml`),
    join(crdDir, `gateway-api-${versions.gatewayApi}-standard.yaml`),
  ];
}
