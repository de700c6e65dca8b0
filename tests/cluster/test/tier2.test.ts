// Tier 2 proof: a node (containerd 2.2.9 + runc, kubelet, kube-proxy in iptables mode, scheduler,
// CoreDNS) runs pods from locally built images. Needs root, a network namespace and ~1 GiB more
// memory; it starts the node itself when it is not running (and fails loudly when it cannot).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  execInPod,
  exposeHostPort,
  kubeconfigPath,
  kubectl,
  unexposeHostPort,
  useCluster,
  waitForPodsReady,
} from '../cluster.ts';
import { nodeImage } from '../node.ts';
import { binaryPath } from '../paths.ts';
import { versions } from '../versions.ts';
import { waitFor } from '../wait.ts';

const namespace = `detour-tier2-${process.pid}`;

function pod(name: string, args: string[]) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: name } },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name, image: versions.netcheckImage, imagePullPolicy: 'IfNotPresent', args }],
    },
  };
}

async function ok(args: string[], input?: string): Promise<string> {
  const result = await kubectl('admin', args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

describe('tier 2 cluster: a node running locally built images', () => {
  let stop: () => Promise<void> = async () => {};

  before(async () => {
    stop = await useCluster((line) => console.log(`# ${line}`), 2);
    await ok(['create', 'namespace', namespace]);
  });

  after(async () => {
    try {
      await kubectl('admin', ['delete', 'namespace', namespace, '--wait=false']);
    } finally {
      await stop();
    }
  });

  it('runs a pod from a locally built image until it is Ready', async () => {
    const manifest = JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        pod('server', ['serve', ':8080']),
        pod('client', ['serve', ':8081']),
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'node-app', namespace },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: 'node',
                image: nodeImage,
                imagePullPolicy: 'IfNotPresent',
                args: [
                  '-e',
                  "require('node:http').createServer((q, s) => s.end('node ' + process.version)).listen(8080)",
                ],
                readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
              },
            ],
          },
        },
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'server', namespace },
          spec: { selector: { app: 'server' }, ports: [{ port: 80, targetPort: 8080 }] },
        },
      ],
    });
    await ok(['apply', '-f', '-'], manifest);
    await waitForPodsReady(namespace, ['server', 'client', 'node-app']);
  });

  it('runs Node 24 from the locally built base image', async () => {
    const ip = (
      await ok(['get', '-n', namespace, 'pod', 'node-app', '-o', 'jsonpath={.status.podIP}'])
    ).trim();
    const result = await execInPod(namespace, 'client', ['/netcheck', 'get', `http://${ip}:8080/`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `node v${process.versions.node}`);
  });

  it('reaches a Service VIP from another pod (kube-proxy) through kubectl exec', async () => {
    const vip = (
      await ok(['get', '-n', namespace, 'service', 'server', '-o', 'jsonpath={.spec.clusterIP}'])
    ).trim();
    const body = await waitFor(
      `http://${vip}/ from pod client`,
      async () => {
        const result = await execInPod(namespace, 'client', ['/netcheck', 'get', `http://${vip}/via-vip`]);
        return result.code === 0 ? result.stdout : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 1000 },
    );
    assert.match(body, /^netcheck server \/via-vip/);
  });

  it('resolves a Service by its cluster DNS name from another pod (CoreDNS)', async () => {
    const url = `http://server.${namespace}.svc.cluster.local/via-dns`;
    const body = await waitFor(
      `${url} from pod client`,
      async () => {
        const result = await execInPod(namespace, 'client', ['/netcheck', 'get', url]);
        return result.code === 0 ? result.stdout : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 1000 },
    );
    assert.match(body, /^netcheck server \/via-dns/);
  });

  it('reaches a process on the host loopback through a Service (exposeHostPort)', async () => {
    const server = createServer((_req, res) => res.end('from the host'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const hostPort = (server.address() as AddressInfo).port;
    try {
      await exposeHostPort({ name: 'host-echo', namespace, hostPort, port: 80, nodePort: 31080 });
      const url = `http://host-echo.${namespace}.svc.cluster.local/`;
      const body = await waitFor(
        `${url} from pod client`,
        async () => {
          const result = await execInPod(namespace, 'client', ['/netcheck', 'get', url]);
          return result.code === 0 ? result.stdout : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 1000 },
      );
      assert.equal(body, 'from the host');
    } finally {
      server.close();
      await unexposeHostPort('host-echo');
    }
  });

  it('forwards a local port to a pod (kubectl port-forward)', async () => {
    const child = spawn(
      binaryPath('kubectl'),
      [
        `--kubeconfig=${kubeconfigPath('admin')}`,
        'port-forward',
        '-n',
        namespace,
        'pod/server',
        ':8080',
        '--address=127.0.0.1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      const port = await waitFor('port-forward to listen', () => /127\.0\.0\.1:(\d+)/.exec(output)?.[1], {
        timeoutMs: 20_000,
      });
      const res = await fetch(`http://127.0.0.1:${port}/via-port-forward`);
      assert.match(await res.text(), /^netcheck server \/via-port-forward/);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
