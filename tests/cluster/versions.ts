import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Versions the cluster is built from: the single source is versions.env (also read by the build script). */
export interface ClusterVersions {
  etcd: string;
  kubernetes: string;
  istioApi: string;
  gatewayApi: string;
  containerd: string;
  pause: string;
  pauseImage: string;
  netcheck: string;
  netcheckImage: string;
  coredns: string;
  corednsImage: string;
}

function readEnvFile(path: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) values.set(match[1], match[2]);
  }
  return values;
}

function required(values: Map<string, string>, key: string): string {
  const value = values.get(key);
  if (value === undefined) throw new Error(`tests/cluster/versions.env has no ${key}=`);
  return value;
}

const env = readEnvFile(join(import.meta.dirname, 'versions.env'));

export const versions: ClusterVersions = {
  etcd: required(env, 'ETCD_VERSION'),
  kubernetes: required(env, 'KUBERNETES_VERSION'),
  istioApi: required(env, 'ISTIO_API_VERSION'),
  gatewayApi: required(env, 'GATEWAY_API_VERSION'),
  containerd: required(env, 'CONTAINERD_VERSION'),
  pause: required(env, 'PAUSE_VERSION'),
  pauseImage: required(env, 'PAUSE_IMAGE'),
  netcheck: required(env, 'NETCHECK_VERSION'),
  netcheckImage: required(env, 'NETCHECK_IMAGE'),
  coredns: required(env, 'COREDNS_VERSION'),
  corednsImage: required(env, 'COREDNS_IMAGE'),
};
