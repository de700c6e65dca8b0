import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type LocalAppFailure, LocalAppForwarder } from '@detour/router/http/serve-from-tunnel';
import {
  type HttpStreamOpen,
  TunnelCode,
  type TunnelStream,
  type TunnelStreamError,
} from '@detour/router/tunnel/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';

function httpOpen(overrides: Partial<HttpStreamOpen> = {}): HttpStreamOpen {
  return {
    kind: 'http',
    session: 'dev-a',
    mode: 'steal',
    targetPort: 8080,
    httpVersion: '1.1',
    method: 'GET',
    path: '/',
    authority: 'orders:8080',
    headers: [['host', 'orders:8080']],
    upgrade: false,
    ...overrides,
  };
}

/** What the agent end of a stream receives: header blocks and bytes, in order. */
async function collect(stream: TunnelStream): Promise<{ blocks: unknown[]; body: Buffer }> {
  const blocks: unknown[] = [];
  stream.on('headers', (block) => blocks.push(block));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { blocks, body: Buffer.concat(chunks) };
}

describe('LocalAppForwarder (CLI side), driven through a real tunnel', () => {
  let pair: Awaited<ReturnType<typeof tunnelPair>>;
  let app: http.Server;
  let appPort: number;
  let forwarder: LocalAppForwarder;
  const aborted: string[] = [];

  before(async () => {
    pair = await tunnelPair();
    app = http.createServer((req, res) => {
      if (req.url === '/slow') {
        res.on('close', () => aborted.push(req.url as string));
        return;
      }
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        body += chunk;
      });
      req.on('end', () => {
        res.setHeader('trailer', 'x-count');
        res.setHeader('connection', 'x-private');
        res.setHeader('x-private', 'must not travel');
        res.write(
          `${req.method} ${req.url} host=${req.headers.host} connection=${req.headers.connection} body=${body}`,
        );
        res.addTrailers({ 'x-count': String(body.length) });
        res.end();
      });
    });
    app.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${req.headers.upgrade}\r\n\r\nwelcome;`,
      );
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appPort = (app.address() as AddressInfo).port;
    forwarder = new LocalAppForwarder({ localPort: () => appPort });
    forwarder.attach(pair.client);
  });
  after(async () => {
    forwarder.close();
    await pair.close();
    app.close();
  });

  it('relays head, body and trailers as header blocks around the bytes, without hop-by-hop fields', async () => {
    const stream = pair.server.openStream(
      httpOpen({
        method: 'POST',
        path: '/echo',
        headers: [
          ['host', 'orders:8080'],
          ['content-length', '5'],
        ],
      }),
    );
    stream.end('hello');
    const { blocks, body } = await collect(stream);
    const [head, trailers] = blocks as [
      { status: number; headers: [string, string][] },
      { trailers: [string, string][] },
    ];
    assert.equal(head.status, 200);
    assert.ok(
      !head.headers.some(
        ([name]) => name === 'connection' || name === 'x-private' || name === 'transfer-encoding',
      ),
      JSON.stringify(head.headers),
    );
    assert.equal(body.toString(), 'POST /echo host=orders:8080 connection=keep-alive body=hello');
    assert.deepEqual(trailers, { trailers: [['x-count', '5']] });
  });

  it('local app down: resets with DETOUR_LOCAL_APP_UNREACHABLE naming the port and the fix', async () => {
    const failures: LocalAppFailure[] = [];
    const down = new LocalAppForwarder({
      localPort: () => 1,
      onFailure: (failure) => failures.push(failure),
    });
    const other = await tunnelPair();
    down.attach(other.client);
    try {
      const stream = other.server.openStream(httpOpen());
      stream.end();
      const [error] = (await once(stream, 'error')) as [TunnelStreamError];
      assert.equal(error.code, TunnelCode.upstream);
      assert.match(
        error.message,
        /nothing answered on 127\.0\.0\.1:1 \(ECONNREFUSED\): start your app on port 1 \(the session maps port 8080 to it/,
      );
      // The session hears of it too, to tell its user.
      assert.deepEqual(
        failures.map(({ method, path, code, text }) => ({ method, path, code, text })),
        [{ method: 'GET', path: '/', code: TunnelCode.upstream, text: error.message }],
      );
    } finally {
      down.close();
      await other.close();
    }
  });

  it('a local app that is not an HTTP/1.1 server: the reset says so', async () => {
    const h2only = http2.createServer();
    await new Promise<void>((resolve) => h2only.listen(0, '127.0.0.1', resolve));
    const wrong = new LocalAppForwarder({ localPort: () => (h2only.address() as AddressInfo).port });
    const other = await tunnelPair();
    wrong.attach(other.client);
    try {
      const stream = other.server.openStream(httpOpen());
      stream.end();
      const [error] = (await once(stream, 'error')) as [TunnelStreamError];
      assert.equal(error.code, TunnelCode.upstream);
      assert.match(
        error.message,
        /answered something that is not HTTP\/1\.1 \(Response does not match the HTTP\/1\.1 protocol/,
      );
    } finally {
      wrong.close();
      await other.close();
      h2only.close();
    }
  });

  it('an agent reset cancels the request to the local app', async () => {
    const stream = pair.server.openStream(httpOpen({ path: '/slow' }));
    stream.end();
    stream.on('error', () => {});
    for (let i = 0; i < 100 && pair.client.openStreams === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 20));
    stream.reset(TunnelCode.cancel, 'client went away');
    for (let i = 0; i < 100 && aborted.length === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(aborted, ['/slow']);
  });

  it('upgrade: the 101 head, then raw bytes both ways on the same stream', async () => {
    const stream = pair.server.openStream(
      httpOpen({
        upgrade: true,
        headers: [
          ['host', 'orders:8080'],
          ['connection', 'upgrade'],
          ['upgrade', 'raw-echo'],
        ],
      }),
    );
    const [head] = (await once(stream, 'headers')) as [{ status: number; headers: [string, string][] }];
    assert.equal(head.status, 101);
    assert.deepEqual(head.headers, [
      ['connection', 'upgrade'],
      ['upgrade', 'raw-echo'],
    ]);
    stream.write('ping;');
    let received = '';
    for await (const chunk of stream) {
      received += chunk;
      if (received === 'welcome;ping;') break;
    }
    assert.equal(received, 'welcome;ping;');
  });
});
