import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { type Duplex, duplexPair } from 'node:stream';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { EgressProxy } from '@detour/cli/egress/egress-proxy';
import { EgressRouter } from '@detour/cli/egress/egress-router';
import type { EgressDialer, ResolvedAddress } from '@detour/router/egress/dialer';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { EgressPolicy } from '@detour/router/egress/egress-policy';

const run = promisify(execFile);

/**
 * A remote dialer whose streams are not sockets, like the tunnel's: each connect is one side of an
 * in-memory duplex pair whose other side is handed to an in-process HTTP server. Proves the proxy
 * relies on nothing beyond the Duplex the EgressDialer contract promises.
 */
class InMemoryClusterDialer implements EgressDialer {
  readonly server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, host: req.headers.host, via: 'in-memory' }));
  });
  dials: string[] = [];

  async connect(host: string, port: number): Promise<Duplex> {
    if (host !== 'payments' && host !== '10.96.0.10') {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    }
    this.dials.push(`${host}:${port}`);
    const [client, server] = duplexPair();
    this.server.emit('connection', server);
    return client;
  }

  async lookup(name: string): Promise<ResolvedAddress[]> {
    if (name !== 'payments')
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return [{ address: '10.96.0.10', family: 4 }];
  }
}

const remote = new InMemoryClusterDialer();
let proxy: EgressProxy;
let port: number;

before(async () => {
  const policy = new EgressPolicy({ include: ['10.96.0.0/12'] });
  proxy = new EgressProxy({ router: new EgressRouter({ policy, remote, local: new DirectDialer() }) });
  port = (await proxy.listen()).port;
});
after(() => proxy.close());

test('SOCKS5 CONNECT, HTTP CONNECT and absolute-URI requests over a dialer of plain Duplex streams', async () => {
  const curl = async (...args: string[]) =>
    JSON.parse((await run('curl', ['-sS', '--max-time', '5', ...args])).stdout);
  assert.deepEqual(await curl('--socks5-hostname', `127.0.0.1:${port}`, 'http://payments/s'), {
    url: '/s',
    host: 'payments',
    via: 'in-memory',
  });
  assert.equal((await curl('-x', `http://127.0.0.1:${port}`, 'http://payments/f?q=1')).url, '/f?q=1');
  assert.equal((await curl('-p', '-x', `http://127.0.0.1:${port}`, 'http://payments/c')).url, '/c');
  assert.deepEqual(remote.dials, ['payments:80', 'payments:80', 'payments:80']);
});

test('a POST body through absolute-URI proxying arrives whole', async () => {
  remote.server.removeAllListeners('request');
  remote.server.on('request', (req, res) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
    });
    req.on('end', () => res.end(JSON.stringify({ size, te: req.headers['transfer-encoding'] ?? null })));
  });
  const body = 'x'.repeat(300_000);
  const answer = await new Promise<string>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: 'http://payments/upload', agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve(text));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
  assert.equal(JSON.parse(answer).size, body.length);
});

test('a client that half-closes right after its request leaves nothing open', async () => {
  const socket = net.connect(port, '127.0.0.1');
  socket.end(Buffer.from([5, 1, 0, 5, 1, 0, 3, 8, ...Buffer.from('payments'), 0, 80]));
  await new Promise((resolve) => socket.resume().on('close', resolve));
  for (let i = 0; i < 50 && proxy.openStreams > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(proxy.openStreams, 0);
});

test('a client that connects and closes without a byte, or stays silent, leaves nothing open', async () => {
  const silentProxy = new EgressProxy({
    router: new EgressRouter({ policy: new EgressPolicy(), remote, local: new DirectDialer() }),
    firstByteTimeoutMs: 200,
  });
  const { port: silentPort } = await silentProxy.listen();
  try {
    const closing = net.connect(silentPort, '127.0.0.1', () => closing.end());
    const silent = net.connect(silentPort, '127.0.0.1');
    await Promise.all(
      [closing, silent].map((s) => new Promise((resolve) => s.resume().on('close', resolve))),
    );
    for (let i = 0; i < 50 && silentProxy.openStreams > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(silentProxy.openStreams, 0);
    assert.equal(silentProxy.stats.connections, 2);
  } finally {
    await silentProxy.close();
  }
});
