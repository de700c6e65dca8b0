import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { EgressProxy } from '@detour/cli/egress/egress-proxy';
import { EgressRouter } from '@detour/cli/egress/egress-router';
import { HostsDialer } from '@detour/cli/egress/hosts-dialer';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { EgressPolicy } from '@detour/router/egress/egress-policy';
import * as grpc from '@grpc/grpc-js';
import { makeTestCertificate } from '../../tests/support/test-certificate.ts';

/** Where the stand-in cluster's services live: 127.77.0.0/16 is "the cluster" (declared remote). */
export const clusterAddress = '127.77.0.10';
export const clusterCidr = '127.77.0.0/16';
const clusterNames = ['payments', 'payments.staging.svc.cluster.local'];
/** A cluster name with several addresses of both families (a headless Service's pods). */
export const multiAddressName = 'orders-headless.staging.svc.cluster.local';
export const multiAddresses = ['127.77.0.11', '127.77.0.12', 'fd00:77::11'];

export interface FakeCluster {
  proxy: EgressProxy;
  /** Connections each service accepted. */
  accepted: Record<'http' | 'https' | 'http2' | 'grpc' | 'tcp' | 'database', number>;
  caFile: string;
  databasePort: number;
  env: Record<string, string>;
  close(): Promise<void>;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

/**
 * Services reachable only through the proxy, by cluster names: an HTTP and an HTTPS echo (the body
 * is the request's headers and TLS server name), a grpc-js echo of metadata, a TCP service that
 * answers after the client's half-close; plus a loopback "database" that the app reaches directly.
 */
export async function startFakeCluster(): Promise<FakeCluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'detour-layer-'));
  const { keyFile, certFile: caFile } = makeTestCertificate(dir, [
    'payments.staging.svc.cluster.local',
    'payments',
  ]);
  const accepted = { http: 0, https: 0, http2: 0, grpc: 0, tcp: 0, database: 0 };
  const echo = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const servername = (req.socket as { servername?: string | false }).servername;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ headers: req.headers, servername: servername || null, url: req.url }));
  };
  const httpServer = http.createServer(echo).on('connection', () => accepted.http++);
  const httpsServer = https
    .createServer({ key: readFileSync(keyFile), cert: readFileSync(caFile) }, echo)
    .on('secureConnection', () => accepted.https++);
  const http2Server = http2.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ headers: req.headers, url: req.url }));
  });
  http2Server.on('session', () => accepted.http2++);
  const tcpServer = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted.tcp++;
    let got = '';
    socket.setEncoding('utf8').on('data', (chunk) => {
      got += chunk;
    });
    socket.on('end', () => socket.end(`pong:${got}`));
  });
  const databaseServer = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted.database++;
    socket.on('data', () => {}).on('end', () => socket.end('1 row'));
  });
  const grpcServer = new grpc.Server();
  const json = (value: unknown) => Buffer.from(JSON.stringify(value));
  const parse = (buf: Buffer) => JSON.parse(buf.toString()) as unknown;
  grpcServer.addService(
    {
      Echo: {
        path: '/detour.test.Echo/Echo',
        requestStream: false,
        responseStream: false,
        requestSerialize: json,
        requestDeserialize: parse,
        responseSerialize: json,
        responseDeserialize: parse,
      },
    },
    {
      Echo: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        accepted.grpc++;
        callback(null, { metadata: call.metadata.getMap(), request: call.request });
      },
    },
  );
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  const [httpPort, httpsPort, tcpPort, databasePort, http2Port] = await Promise.all(
    [httpServer, httpsServer, tcpServer, databaseServer, http2Server].map(listen),
  );
  const at = (port: number | undefined) => ({ host: '127.0.0.1', port: port ?? 0 });
  const remote = new HostsDialer(
    {
      names: {
        ...Object.fromEntries(clusterNames.map((name) => [name, [clusterAddress]])),
        [multiAddressName]: multiAddresses,
      },
      endpoints: {
        [`${clusterAddress}:80`]: at(httpPort),
        [`${clusterAddress}:443`]: at(httpsPort),
        [`${clusterAddress}:50051`]: at(grpcPort),
        [`${clusterAddress}:7000`]: at(tcpPort),
        [`${clusterAddress}:8080`]: at(http2Port),
      },
    },
    new DirectDialer(),
  );
  const policy = new EgressPolicy({ include: [clusterCidr] });
  const proxy = new EgressProxy({ router: new EgressRouter({ policy, remote, local: new DirectDialer() }) });
  await proxy.listen();
  return {
    proxy,
    accepted,
    caFile,
    databasePort: databasePort ?? 0,
    env: { ...proxy.env(), TEST_CA_FILE: caFile, TEST_DB_PORT: String(databasePort) },
    async close() {
      await proxy.close();
      grpcServer.forceShutdown();
      for (const server of [httpServer, httpsServer, tcpServer, databaseServer, http2Server]) {
        (server as http.Server).closeAllConnections?.();
        server.close();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RunningApp {
  /** The app's own HTTP port: requests to it are "stolen requests". */
  port: number;
  /** A call made while handling an inbound request with these headers. */
  inside(
    kind: string,
    headers?: Record<string, string>,
    appHeader?: string,
  ): Promise<Record<string, unknown>>;
  /** The same, with the inbound request arriving over HTTP/2 at the app's h2c server. */
  insideH2(kind: string, headers?: Record<string, string>): Promise<Record<string, unknown>>;
  /** A call made outside any request. */
  outside(kind: string): Promise<Record<string, unknown>>;
  stop(): void;
}

const appFile = path.join(import.meta.dirname, 'fixtures', 'app.ts');
const repoRoot = path.resolve(import.meta.dirname, '..', '..');

/** Starts the fixture app as a real child `node`, with the layer only through NODE_OPTIONS. */
export async function startApp(env: Record<string, string>): Promise<RunningApp> {
  const child: ChildProcess = spawn(process.execPath, [appFile], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const waiting = new Map<number, (value: Record<string, unknown>) => void>();
  let nextId = 0;
  let h2Port = 0;
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`app exited with ${code} before listening`)));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const message = JSON.parse(line) as {
        listening?: number;
        h2?: number;
        id?: number;
        value?: Record<string, unknown>;
      };
      if (message.listening) {
        h2Port = message.h2 ?? 0;
        resolve(message.listening);
      } else if (message.id !== undefined) waiting.get(message.id)?.(message.value ?? {});
    });
  });
  return {
    port,
    async inside(kind, headers = {}, appHeader) {
      const query = new URLSearchParams({ kind, ...(appHeader ? { appHeader } : {}) });
      const res = await fetch(`http://127.0.0.1:${port}/call?${query}`, { headers });
      return (await res.json()) as Record<string, unknown>;
    },
    insideH2(kind, headers = {}) {
      return new Promise((resolve, reject) => {
        const session = http2.connect(`http://127.0.0.1:${h2Port}`);
        session.on('error', reject);
        const stream = session.request({ ':path': `/call?kind=${encodeURIComponent(kind)}`, ...headers });
        let body = '';
        stream.setEncoding('utf8').on('data', (chunk) => {
          body += chunk;
        });
        stream.on('end', () => {
          session.close();
          resolve(JSON.parse(body) as Record<string, unknown>);
        });
        stream.on('error', reject);
      });
    },
    outside(kind) {
      const id = nextId++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        child.stdin?.write(`${JSON.stringify({ id, kind })}\n`);
      });
    },
    stop() {
      child.stdin?.end();
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid);
    },
  };
}
