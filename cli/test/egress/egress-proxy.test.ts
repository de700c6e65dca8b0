import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { EgressProxy } from '@detour/cli/egress/egress-proxy';
import { EgressRouter } from '@detour/cli/egress/egress-router';
import { HostsDialer } from '@detour/cli/egress/hosts-dialer';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { EgressPolicy } from '@detour/router/egress/egress-policy';
import { encodeAddress, readAddress, readExactly } from '@detour/router/egress/socks5';
import { makeTestCertificate } from '../../../tests/support/test-certificate.ts';

const run = promisify(execFile);
const clusterAddress = '127.77.0.10';
const clusterName = 'payments.staging.svc.cluster.local';

function need(tool: string, install: string, versionArgs = ['--version']): void {
  try {
    execFileSync(tool, versionArgs, { stdio: 'ignore' });
  } catch {
    throw new Error(`this test needs ${tool} on PATH (${install})`);
  }
}

function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, host, () => resolve((server.address() as net.AddressInfo).port)),
  );
}

/** One SOCKS5 exchange with the proxy: returns the reply code and bound address, and the open socket. */
async function socks(port: number, command: number, host: string, targetPort: number, methods = [0]) {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(Buffer.from([5, methods.length, ...methods]));
  const [, method] = await readExactly(socket, 2);
  if (method !== 0) return { method, reply: -1, bound: undefined, socket };
  socket.write(Buffer.concat([Buffer.from([5, command, 0]), encodeAddress(host, targetPort)]));
  const [, reply = -1] = await readExactly(socket, 3);
  const bound = await readAddress(socket);
  return { method, reply, bound, socket };
}

function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
  });
}

describe('the loopback egress proxy', () => {
  let dir: string;
  let proxy: EgressProxy;
  let proxyPort: number;
  let caFile: string;
  let closedPort: number;
  const servers: net.Server[] = [];

  before(async () => {
    need('curl', 'apt-get install curl');
    need('python3', 'apt-get install python3');
    need('openssl', 'apt-get install openssl', ['version']);
    dir = mkdtempSync(path.join(tmpdir(), 'detour-egress-'));
    const { keyFile, certFile } = makeTestCertificate(dir, [clusterName]);
    caFile = certFile;
    const echo = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const servername = (req.socket as { servername?: string }).servername ?? null;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: req.url, headers: req.headers, servername }));
    };
    const httpServer = http.createServer(echo);
    const httpsServer = https.createServer({ key: readFileSync(keyFile), cert: readFileSync(caFile) }, echo);
    // Echoes every byte back, then ends once the client has ended (half-close).
    const echoServer = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.pipe(socket);
    });
    const closed = net.createServer();
    servers.push(httpServer, httpsServer, echoServer);
    const [httpPort, httpsPort, echoPort] = await Promise.all(servers.map((s) => listen(s)));
    closedPort = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    const remote = new HostsDialer(
      {
        names: { payments: [clusterAddress], [clusterName]: [clusterAddress] },
        endpoints: {
          [`${clusterAddress}:80`]: { host: '127.0.0.1', port: httpPort ?? 0 },
          [`${clusterAddress}:443`]: { host: '127.0.0.1', port: httpsPort ?? 0 },
          [`${clusterAddress}:7`]: { host: '127.0.0.1', port: echoPort ?? 0 },
        },
      },
      new DirectDialer(),
    );
    const policy = new EgressPolicy({ include: ['127.77.0.0/16'] });
    proxy = new EgressProxy({ router: new EgressRouter({ policy, remote, local: new DirectDialer() }) });
    proxyPort = (await proxy.listen()).port;
  });

  after(async () => {
    await proxy?.close();
    for (const server of servers) {
      (server as http.Server).closeAllConnections?.();
      server.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('curl --socks5-hostname reaches a cluster name (remote DNS)', async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '--max-time',
      '5',
      '--socks5-hostname',
      `127.0.0.1:${proxyPort}`,
      'http://payments/a?b=1',
    ]);
    const body = JSON.parse(stdout);
    assert.equal(body.url, '/a?b=1');
    assert.equal(body.headers.host, 'payments');
  });

  test('curl --socks5-hostname: a name the cluster cannot resolve is "host unreachable"', async () => {
    const failed = await run('curl', [
      '-sS',
      '--max-time',
      '5',
      '--socks5-hostname',
      `127.0.0.1:${proxyPort}`,
      'http://nope/',
    ]).catch((err: { code: number; stderr: string }) => err);
    assert.equal((failed as { code: number }).code, 97);
    assert.match((failed as { stderr: string }).stderr, /\(4\)/);
  });

  test('curl -x (absolute-URI HTTP proxying) and -p -x (CONNECT) reach cluster names', async () => {
    const forward = JSON.parse(
      (
        await run('curl', [
          '-sS',
          '--max-time',
          '5',
          '-x',
          `http://127.0.0.1:${proxyPort}`,
          `http://${clusterName}/f`,
        ])
      ).stdout,
    );
    assert.equal(forward.url, '/f');
    assert.equal(forward.headers.host, clusterName);
    assert.equal(forward.headers['proxy-connection'], undefined);
    const tunneled = JSON.parse(
      (
        await run('curl', [
          '-sS',
          '--max-time',
          '5',
          '--cacert',
          caFile,
          '-x',
          `http://127.0.0.1:${proxyPort}`,
          `https://${clusterName}/t`,
        ])
      ).stdout,
    );
    assert.equal(tunneled.url, '/t');
    assert.equal(tunneled.servername, clusterName);
  });

  test('HTTP proxy errors carry the dialer error code', async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '-i',
      '--max-time',
      '5',
      '-x',
      `http://127.0.0.1:${proxyPort}`,
      'http://nope/',
    ]);
    assert.match(stdout, /^HTTP\/1\.1 502/);
    assert.match(stdout, /x-detour-error: ENOTFOUND/i);
    const failed = await run('curl', [
      '-sS',
      '--max-time',
      '5',
      '-p',
      '-x',
      `http://127.0.0.1:${proxyPort}`,
      `http://127.0.0.1:${closedPort}/`,
    ]).catch((err: { stderr: string }) => err);
    assert.match((failed as { stderr: string }).stderr, /502/);
  });

  test('python urllib with HTTP_PROXY reaches a cluster name', async () => {
    const { stdout } = await run(
      'python3',
      [
        '-c',
        'import urllib.request; print(urllib.request.urlopen("http://payments/py", timeout=5).read().decode())',
      ],
      { env: { ...process.env, ...proxy.env(), NO_PROXY: '' } },
    );
    const body = JSON.parse(stdout);
    assert.equal(body.url, '/py');
    assert.match(body.headers['user-agent'], /Python-urllib/);
  });

  test('SOCKS5 CONNECT by IPv4 and IPv6 address; local addresses go through the local dialer', async () => {
    const v4 = net.createServer((s) => s.end('v4'));
    const v6 = net.createServer((s) => s.end('v6'));
    const [p4, p6] = [await listen(v4), await listen(v6, '::1')];
    try {
      const local = proxy.stats.local;
      const a = await socks(proxyPort, 1, '127.0.0.1', p4);
      assert.equal(a.reply, 0);
      assert.equal((await readAll(a.socket)).toString(), 'v4');
      const b = await socks(proxyPort, 1, '::1', p6);
      assert.equal(b.reply, 0);
      assert.equal((await readAll(b.socket)).toString(), 'v6');
      assert.equal(proxy.stats.local, local + 2);
    } finally {
      v4.close();
      v6.close();
    }
  });

  test('SOCKS5 reply codes: refused 0x05, unknown name 0x04, BIND unsupported 0x07, no acceptable auth 0xFF', async () => {
    assert.equal((await socks(proxyPort, 1, '127.0.0.1', closedPort)).reply, 0x05);
    assert.equal((await socks(proxyPort, 1, 'nope.staging.svc.cluster.local', 80)).reply, 0x04);
    assert.equal((await socks(proxyPort, 2, 'payments', 80)).reply, 0x07);
    assert.equal((await socks(proxyPort, 1, 'payments', 80, [2])).method, 0xff);
  });

  test('Tor RESOLVE (0xF0) answers from the cluster DNS', async () => {
    const found = await socks(proxyPort, 0xf0, 'payments', 0);
    assert.equal(found.reply, 0);
    assert.equal(found.bound?.host, clusterAddress);
    assert.equal((await socks(proxyPort, 0xf0, 'nope', 0)).reply, 0x04);
  });

  test('bytes are relayed both ways with backpressure, half-close honoured, no stream left open', async () => {
    const { reply, socket } = await socks(proxyPort, 1, 'payments.staging.svc.cluster.local', 7);
    assert.equal(reply, 0);
    const payload = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4096) payload.writeUInt32BE(i, i);
    const echoed = readAll(socket);
    socket.end(payload);
    const back = await echoed;
    assert.equal(back.length, payload.length);
    assert.equal(
      createHash('sha256').update(back).digest('hex'),
      createHash('sha256').update(payload).digest('hex'),
    );
    for (let i = 0; i < 50 && proxy.openStreams > 0; i++) await sleep(20);
    assert.equal(proxy.openStreams, 0);
  });

  test('the client vanishing mid-stream closes the upstream too', async () => {
    const { socket } = await socks(proxyPort, 1, 'payments', 7);
    socket.write('hello');
    await readExactly(socket, 5);
    socket.destroy();
    for (let i = 0; i < 50 && proxy.openStreams > 0; i++) await sleep(20);
    assert.equal(proxy.openStreams, 0);
  });
});
