import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalAppForwarder } from '@detour/router/http/serve-from-tunnel';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';
import { InboundListener } from '../../src/inbound/inbound-listener.ts';
import { hostAliases, SessionRegistry } from '../../src/session-registry.ts';
import { curl, request, request2, sha256 } from './clients.ts';
import { listen, portOf, type Stack, startStack, stealSession } from './stack.ts';

/** The developer's "local app": says who answered, over which protocol, with a trailer. */
function localApp(): http.Server {
  return http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      res.setHeader('x-answered-by', 'local');
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.setHeader('trailer', 'x-body-sha256');
      res.write(
        `local ${req.httpVersion} ${req.method} ${req.url} x-dev=${req.headers['x-dev']} host=${req.headers.host}\n`,
      );
      res.addTrailers({ 'x-body-sha256': sha256(Buffer.concat(chunks)) });
      res.end();
    });
  });
}

function upstreamApp(): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on('end', () =>
      res.end(`upstream ${req.httpVersion} ${req.method} ${req.url} host=${req.headers.host}\n`),
    );
  });
}

describe('inbound listener → tunnel → local app (HTTP/1.1 and h2c)', () => {
  let app: http.Server;
  let upstream: http.Server;
  let stack: Stack;

  before(async () => {
    app = await listen(localApp());
    upstream = await listen(upstreamApp());
    stack = await startStack({ appPort: portOf(app), upstream: `127.0.0.1:${portOf(upstream)}` });
  });
  after(async () => {
    await stack.close();
    app.close();
    upstream.close();
  });

  it('curl HTTP/1.1 with the session header reaches the local app, headers and trailers intact', async () => {
    const result = await curl(['-sS', '--raw', '-i', '-H', 'x-dev: dev-a', `${stack.url}/orders?id=7`]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^HTTP\/1\.1 200/);
    assert.match(result.stdout, /local 1\.1 GET \/orders\?id=7 x-dev=dev-a host=127\.0\.0\.1:\d+/);
    assert.match(result.stdout, /set-cookie: a=1\r\nset-cookie: b=2/i);
    // --raw shows the chunked framing: the trailer travels after the last chunk.
    assert.match(result.stdout, /0\r\nx-body-sha256: e3b0c442/);
  });

  it('curl --http2-prior-knowledge with the session header reaches the local app (HTTP/1.1 app)', async () => {
    const result = await curl([
      '-sS',
      '-i',
      '--http2-prior-knowledge',
      '-H',
      'x-dev: dev-a',
      `${stack.url}/h2`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^HTTP\/2 200/);
    assert.match(result.stdout, /local 1\.1 GET \/h2 x-dev=dev-a host=127\.0\.0\.1:\d+/);
  });

  it('HTTP/1.1 chunked request body and response trailers, checked with node:http', async () => {
    const body = randomBytes(300_000);
    const res = await request(
      `${stack.url}/upload`,
      { method: 'POST', headers: { 'x-dev': 'dev-a', 'transfer-encoding': 'chunked' } },
      body,
    );
    assert.equal(res.status, 200);
    assert.equal(res.trailers['x-body-sha256'], sha256(body));
    assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2']);
  });

  it('requests without the header pass through to the upstream (HTTP/1.1 and h2c)', async () => {
    const one = await curl(['-sS', `${stack.url}/plain`]);
    assert.equal(one.stdout, `upstream 1.1 GET /plain host=127.0.0.1:${stack.inbound.port}\n`);
    const two = await curl(['-sS', '--http2-prior-knowledge', `${stack.url}/plain2`]);
    assert.equal(two.stdout, `upstream 1.1 GET /plain2 host=127.0.0.1:${stack.inbound.port}\n`);
    const post = await request(
      `${stack.url}/post`,
      { method: 'POST', headers: { 'content-length': '5' } },
      'hello',
    );
    assert.equal(post.body.toString(), `upstream 1.1 POST /post host=127.0.0.1:${stack.inbound.port}\n`);
  });

  it('keeps one HTTP/1.1 connection alive across tunnel and pass-through requests', async () => {
    const result = await curl([
      '-sS',
      '-H',
      'x-dev: dev-a',
      `${stack.url}/k1`,
      `${stack.url}/k2`,
      '-w',
      '%{num_connects}\n',
    ]);
    assert.match(result.stdout, /local 1\.1 GET \/k1/);
    assert.match(result.stdout, /local 1\.1 GET \/k2[\s\S]*\n0\n$/);
  });
});

describe('bodiless responses and Expect: 100-continue', () => {
  let app: http.Server;
  let stack: Stack;

  before(async () => {
    app = await listen(
      http.createServer((req, res) => {
        if (req.url === '/204') {
          res.writeHead(204).end();
          return;
        }
        if (req.url === '/304') {
          res.writeHead(304, { etag: '"v1"' }).end();
          return;
        }
        const hash = createHash('sha256');
        req.on('data', (chunk: Buffer) => hash.update(chunk));
        req.on('end', () => {
          const body = req.method === 'POST' ? hash.digest('hex') : 'hello';
          res.writeHead(200, { 'content-length': String(body.length) });
          res.end(req.method === 'HEAD' ? undefined : body);
        });
      }),
    );
    stack = await startStack({ appPort: portOf(app) });
  });
  after(async () => {
    await stack.close();
    app.close();
  });

  for (const protocol of [[], ['--http2-prior-knowledge']]) {
    it(`HEAD, 204 and 304 end cleanly ${protocol.length ? 'over h2c' : 'over HTTP/1.1'}`, async () => {
      const head = await curl(['-sS', '-m', '5', ...protocol, '-I', '-H', 'x-dev: dev-a', `${stack.url}/`]);
      assert.equal(head.code, 0, head.stderr);
      assert.match(head.stdout, /^HTTP\/[12](\.1)? 200/);
      assert.match(head.stdout, /content-length: 5/);
      for (const status of ['204', '304']) {
        const res = await curl([
          '-sS',
          '-m',
          '5',
          ...protocol,
          '-H',
          'x-dev: dev-a',
          '-w',
          '%{http_code}',
          `${stack.url}/${status}`,
        ]);
        assert.equal(res.code, 0, res.stderr);
        assert.equal(res.stdout, status);
      }
    });
  }

  it('curl uploading with Expect: 100-continue gets its 100 from the agent and the body through', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'detour-expect-'));
    try {
      const file = join(dir, 'body');
      const body = randomBytes(3 * 1024 * 1024);
      await writeFile(file, body);
      const res = await curl([
        '-sS',
        '-v',
        '-H',
        'x-dev: dev-a',
        '-H',
        'Expect: 100-continue',
        '--data-binary',
        `@${file}`,
        `${stack.url}/up`,
      ]);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stderr, /< HTTP\/1\.1 100 Continue/);
      assert.equal(res.stdout, sha256(body));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('h2c end to end (HTTP/2 local app)', () => {
  let app: http2.Http2Server;
  let stack: Stack;

  before(async () => {
    app = http2.createServer();
    app.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'x-answered-by': 'local-h2' }, { waitForTrailers: true });
        stream.on('wantTrailers', () =>
          stream.sendTrailers({ 'x-body-sha256': sha256(Buffer.concat(chunks)) }),
        );
        stream.end(
          `h2 ${headers[':method']} ${headers[':path']} ${headers[':authority']} te=${headers.te}\n`,
        );
      });
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    stack = await startStack({ appPort: portOf(app) });
  });
  after(async () => {
    await stack.close();
    app.close();
  });

  it('relays an HTTP/2 request over h2c to the local app, with HTTP/2 trailers back', async () => {
    const body = randomBytes(200_000);
    const res = await request2(
      stack.url,
      { ':method': 'POST', ':path': '/h2?x=1', 'x-dev': 'dev-a', te: 'trailers' },
      body,
    );
    assert.equal(res.headers[':status'], 200);
    assert.equal(res.headers['x-answered-by'], 'local-h2');
    assert.equal(res.body.toString(), `h2 POST /h2?x=1 127.0.0.1:${stack.inbound.port} te=trailers\n`);
    assert.equal(res.trailers?.['x-body-sha256'], sha256(body));
  });

  it('multiplexes 300 concurrent streams of one HTTP/2 connection through the tunnel', async () => {
    const session = http2.connect(stack.url);
    try {
      const bodies = await Promise.all(
        Array.from(
          { length: 300 },
          (_, i) =>
            new Promise<string>((resolve, reject) => {
              const req = session.request({ ':method': 'POST', ':path': `/n/${i}`, 'x-dev': 'dev-a' });
              let text = '';
              req.setEncoding('utf8');
              req.on('data', (chunk: string) => {
                text += chunk;
              });
              req.on('end', () => resolve(text));
              req.on('error', reject);
              req.end(`body ${i}`);
            }),
        ),
      );
      bodies.forEach((body, i) => {
        assert.equal(body, `h2 POST /n/${i} 127.0.0.1:${stack.inbound.port} te=undefined\n`);
      });
      for (let i = 0; i < 50 && stack.tunnel.server.openStreams > 0; i++)
        await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(stack.tunnel.server.openStreams, 0);
    } finally {
      session.close();
    }
  });

  it('curl --http2-prior-knowledge sees the trailers', async () => {
    const result = await curl([
      '-sS',
      '-v',
      '--http2-prior-knowledge',
      '-H',
      'x-dev: dev-a',
      `${stack.url}/c`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^h2 GET \/c /);
    assert.match(result.stderr, /< x-body-sha256: e3b0c442/);
  });
});

describe('streaming and large bodies', () => {
  let app: http.Server;
  let stack: Stack;
  let releaseSecond: () => void = () => {};
  let appSawAbort: Promise<void> = Promise.resolve();

  before(async () => {
    app = http.createServer((req, res) => {
      if (req.url === '/sse') {
        // The second event is written only after the client has received the first: with any
        // buffering on the way, this test would time out.
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: first\n\n');
        releaseSecond = () => res.end('data: second\n\n');
        return;
      }
      if (req.url === '/download') {
        const total = 100 * 1024 * 1024;
        const hash = createHash('sha256');
        res.writeHead(200, { 'content-length': String(total) });
        let sent = 0;
        let seed = 1;
        const writeMore = () => {
          while (sent < total) {
            const chunk = Buffer.alloc(Math.min(256 * 1024, total - sent), seed++ % 251);
            hash.update(chunk);
            sent += chunk.length;
            if (!res.write(chunk)) {
              res.once('drain', writeMore);
              return;
            }
          }
          res.end();
          downloadHash.resolve(hash.digest('hex'));
        };
        writeMore();
        return;
      }
      if (req.url === '/upload') {
        const hash = createHash('sha256');
        let size = 0;
        req.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          size += chunk.length;
        });
        req.on('end', () => res.end(JSON.stringify({ size, sha256: hash.digest('hex') })));
        return;
      }
      if (req.url === '/hang') {
        appSawAbort = new Promise((resolve) => res.on('close', () => resolve()));
        res.writeHead(200);
        res.write('partial');
        return;
      }
      res.end('?');
    });
    await listen(app);
    stack = await startStack({ appPort: portOf(app) });
  });
  after(async () => {
    await stack.close();
    app.close();
  });

  let downloadHash = Promise.withResolvers<string>();

  it('an SSE stream arrives event by event', async () => {
    const res = await fetch(`${stack.url}/sse`, { headers: { 'x-dev': 'dev-a' } });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    assert.equal(Buffer.from(first.value as Uint8Array).toString(), 'data: first\n\n');
    releaseSecond();
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      rest += Buffer.from(chunk.value).toString();
    assert.equal(rest, 'data: second\n\n');
  });

  it('a 100 MB upload arrives intact (sha256)', async () => {
    const total = 100 * 1024 * 1024;
    const hash = createHash('sha256');
    const result = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        `${stack.url}/upload`,
        { method: 'PUT', agent: false, headers: { 'x-dev': 'dev-a', 'content-length': String(total) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      let sent = 0;
      const writeMore = () => {
        while (sent < total) {
          const chunk = randomBytes(Math.min(1024 * 1024, total - sent));
          hash.update(chunk);
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', writeMore);
            return;
          }
        }
        req.end();
      };
      writeMore();
    });
    assert.deepEqual(JSON.parse(result), { size: total, sha256: hash.digest('hex') });
  });

  it('a 100 MB download arrives intact (sha256), through curl', async () => {
    downloadHash = Promise.withResolvers<string>();
    const dir = await mkdtemp(join(tmpdir(), 'detour-download-'));
    try {
      const file = join(dir, 'body');
      const result = await curl(['-sS', '-H', 'x-dev: dev-a', `${stack.url}/download`, '-o', file], 60_000);
      assert.equal(result.code, 0, result.stderr);
      assert.equal((await stat(file)).size, 100 * 1024 * 1024);
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
      assert.equal(hash.digest('hex'), await downloadHash.promise);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a client that goes away mid-response makes the local app see the request end', async () => {
    // Earlier tests' clients may keep pooled keep-alive connections open: count only this one.
    const connectionsBefore = stack.inbound.connections;
    const socket = net.connect(stack.inbound.port, '127.0.0.1');
    socket.write('GET /hang HTTP/1.1\r\nhost: x\r\nx-dev: dev-a\r\n\r\n');
    await once(socket, 'data');
    socket.destroy();
    await appSawAbort;
    // The tunnel stream is gone on both ends once the reset propagated.
    for (
      let i = 0;
      i < 50 && (stack.tunnel.server.openStreams > 0 || stack.tunnel.client.openStreams > 0);
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(stack.tunnel.server.openStreams, 0);
    assert.equal(stack.tunnel.client.openStreams, 0);
    for (let i = 0; i < 50 && stack.inbound.connections > connectionsBefore; i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(stack.inbound.connections, connectionsBefore);
  });
});

describe('failures the client must understand', () => {
  it('local app down → 502 naming the session and the port', async () => {
    const closed = await listen(http.createServer());
    const port = portOf(closed);
    closed.close();
    const stack = await startStack({ appPort: port, sessionId: 'dev-a-7f3' });
    try {
      const one = await request(`${stack.url}/x`, { headers: { 'x-dev': 'dev-a' } });
      assert.equal(one.status, 502);
      const text = one.body.toString();
      assert.match(
        text,
        /^detour: the local process of session dev-a-7f3 is unreachable \(DETOUR_LOCAL_APP_UNREACHABLE\)/,
      );
      assert.match(text, new RegExp(`127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
      assert.match(text, new RegExp(`start your app on port ${port}`));
      const two = await curl([
        '-sS',
        '--http2-prior-knowledge',
        '-H',
        'x-dev: dev-a',
        '-w',
        '%{http_code}',
        `${stack.url}/y`,
      ]);
      assert.match(two.stdout, /session dev-a-7f3 is unreachable[\s\S]*502$/);
    } finally {
      await stack.close();
    }
  });

  it('no session and no upstream → 404 saying what the sessions match and what the request held', async () => {
    const app = await listen(http.createServer((_req, res) => res.end()));
    const stack = await startStack({ appPort: portOf(app) });
    try {
      const res = await request(`${stack.url}/nobody`, { headers: { 'x-dev': 'dev-b' } });
      assert.equal(res.status, 404);
      assert.equal(res.headers['x-detour-error'], 'DETOUR_NO_SESSION');
      const text = res.body.toString();
      assert.match(text, /no session on this agent matches GET \/nobody/);
      assert.match(text, /dev-a: x-dev=dev-a/);
      assert.match(text, /x-dev: dev-b/);
      const h2 = await curl(['-sS', '--http2-prior-knowledge', '-w', '%{http_code}', `${stack.url}/nobody2`]);
      assert.match(h2.stdout, /x-dev: \(absent\)\n404$/);
    } finally {
      await stack.close();
      app.close();
    }
  });

  it('tunnel closed mid-response → the client connection is cut; a closed tunnel takes no requests', async () => {
    const app = await listen(
      http.createServer((_req, res) => {
        res.writeHead(200);
        res.write('part');
      }),
    );
    const stack = await startStack({ appPort: portOf(app) });
    try {
      const cut = new Promise<string>((resolve, reject) => {
        const req = http.get(`${stack.url}/x`, { agent: false, headers: { 'x-dev': 'dev-a' } }, (res) => {
          res.once('data', () => stack.tunnel.client.close());
          res.on('error', (error) => resolve((error as { code?: string }).code ?? error.message));
          res.on('end', () => reject(new Error('the response ended normally')));
        });
        req.on('error', reject);
      });
      assert.equal(await cut, 'ECONNRESET');
      // The registry no longer matches a session whose tunnel closed: without upstream, a 404.
      const after = await request(`${stack.url}/y`, { headers: { 'x-dev': 'dev-a' } });
      assert.equal(after.status, 404);
      assert.match(after.body.toString(), /dev-a: x-dev=dev-a \(tunnel closed\)/);
    } finally {
      await stack.close();
      app.close();
    }
  });

  it('tunnel closed before the response → 502 naming the session', async () => {
    const app = await listen(http.createServer(() => {}));
    const stack = await startStack({ appPort: portOf(app) });
    app.on('request', () => stack.tunnel.client.close());
    try {
      const res = await request(`${stack.url}/x`, { headers: { 'x-dev': 'dev-a' } });
      assert.equal(res.status, 502);
      assert.match(
        res.body.toString(),
        /^detour: the local process of session dev-a is unreachable \(DETOUR_TUNNEL_CLOSED\)/,
      );
    } finally {
      await stack.close();
      app.close();
    }
  });

  it('upstream down → 502 naming the upstream', async () => {
    const closed = await listen(http.createServer());
    const port = portOf(closed);
    closed.close();
    const app = await listen(http.createServer((_req, res) => res.end()));
    const stack = await startStack({ appPort: portOf(app), upstream: `127.0.0.1:${port}` });
    try {
      const res = await request(`${stack.url}/x`);
      assert.equal(res.status, 502);
      assert.match(
        res.body.toString(),
        new RegExp(`upstream http://127\\.0\\.0\\.1:${port} failed \\(ECONNREFUSED\\)`),
      );
      const h2 = await curl(['-sS', '--http2-prior-knowledge', '-w', '%{http_code}', `${stack.url}/y`]);
      assert.match(
        h2.stdout,
        new RegExp(`upstream 127\\.0\\.0\\.1:${port} failed \\(ECONNREFUSED\\)[\\s\\S]*502$`),
      );
    } finally {
      await stack.close();
      app.close();
    }
  });
});

describe('early answers', () => {
  it('a local app that answers 413 before reading the body: the client gets the 413, nothing leaks', async () => {
    // (With `connection: close` the app would race its own answer against the upload: a client,
    // detour or Envoy, may see the reset before the answer. Node's default drains instead.)
    const app = await listen(
      http.createServer((_req, res) => {
        res.writeHead(413, { 'content-length': '9' });
        res.end('too large');
      }),
    );
    const stack = await startStack({ appPort: portOf(app) });
    try {
      const res = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
        const req = http.request(`${stack.url}/up`, {
          method: 'POST',
          agent: false,
          headers: { 'x-dev': 'dev-a', 'content-length': String(8 * 1024 * 1024) },
        });
        req.on('response', (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            body += chunk;
          });
          response.on('end', () => {
            resolve({ status: response.statusCode, body });
            req.destroy();
          });
        });
        req.on('error', reject);
        // The whole body is sent: the agent and the CLI must drain it, not stall.
        req.end(Buffer.alloc(8 * 1024 * 1024, 1));
      });
      assert.deepEqual(res, { status: 413, body: 'too large' });
      const busy = () => stack.tunnel.server.openStreams + stack.tunnel.client.openStreams > 0;
      for (let i = 0; i < 200 && busy(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(stack.tunnel.server.openStreams, 0);
      assert.equal(stack.tunnel.client.openStreams, 0);
    } finally {
      await stack.close();
      app.close();
    }
  });
});

describe('many sessions on one agent', () => {
  it('routes each developer’s requests down their own tunnel to their own app', async () => {
    const apps: http.Server[] = [];
    const tunnels: Awaited<ReturnType<typeof tunnelPair>>[] = [];
    const forwarders: LocalAppForwarder[] = [];
    const registry = new SessionRegistry();
    for (const dev of ['dev-a', 'dev-b', 'dev-c']) {
      const app = await listen(http.createServer((_req, res) => res.end(`app of ${dev}`)));
      const tunnel = await tunnelPair();
      const forwarder = new LocalAppForwarder({ localPort: () => portOf(app) });
      forwarder.attach(tunnel.client);
      const filter = { headers: { 'x-dev': { exact: dev } } };
      registry.register(stealSession(dev, filter, tunnel.server));
      apps.push(app);
      tunnels.push(tunnel);
      forwarders.push(forwarder);
    }
    const inbound = await InboundListener.listen({ registry, host: '127.0.0.1' });
    try {
      const answers = await Promise.all(
        Array.from({ length: 60 }, async (_, i) => {
          const dev = ['dev-a', 'dev-b', 'dev-c'][i % 3] as string;
          const res = await request(`http://127.0.0.1:${inbound.port}/`, { headers: { 'x-dev': dev } });
          return [dev, res.body.toString()];
        }),
      );
      for (const [dev, body] of answers) assert.equal(body, `app of ${dev}`);
    } finally {
      await inbound.close();
      for (const forwarder of forwarders) forwarder.close();
      for (const tunnel of tunnels) await tunnel.close();
      for (const app of apps) app.close();
    }
  });
});

describe('mirror mode', () => {
  it('takes the copies Envoy sends to <host>-shadow for its target; a steal session does not', async () => {
    const seen: string[] = [];
    const app = await listen(
      http.createServer((req, res) => {
        seen.push(String(req.headers.host));
        res.end('local');
      }),
    );
    const stack = await startStack({ appPort: portOf(app), mode: 'mirror' });
    const session = stack.registry.routed()[0];
    assert.ok(session);
    const hosts = hostAliases('orders.staging.svc.cluster.local');
    stack.registry.register({ ...session, hosts });
    try {
      for (const host of ['orders-shadow:8080', 'orders.staging.svc.cluster.local:8080-shadow']) {
        const res = await request(`${stack.url}/`, { headers: { 'x-dev': 'dev-a', host } });
        assert.equal(res.status, 202, host);
      }
      const other = await request(`${stack.url}/`, {
        headers: { 'x-dev': 'dev-a', host: 'payments-shadow:8080' },
      });
      assert.equal(other.status, 404, 'a copy for another Service is not this session’s');
      stack.registry.register({ ...session, hosts, mode: 'steal' });
      const stolen = await request(`${stack.url}/`, {
        headers: { 'x-dev': 'dev-a', host: 'orders-shadow:8080' },
      });
      assert.equal(stolen.status, 404, 'only mirror sessions take -shadow hosts');
      for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(seen, ['orders-shadow:8080', 'orders.staging.svc.cluster.local:8080-shadow']);
    } finally {
      await stack.close();
      app.close();
    }
  });

  it('answers 202 at once, delivers the copy, and ignores a failing copy', async () => {
    const copies: string[] = [];
    const gotCopy = Promise.withResolvers<void>();
    const app = await listen(
      http.createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => {
          body += chunk;
        });
        req.on('end', () => {
          copies.push(`${req.method} ${req.url} ${body}`);
          gotCopy.resolve();
          res.destroy(); // a broken local app must not matter
        });
      }),
    );
    const stack = await startStack({ appPort: portOf(app), mode: 'mirror' });
    try {
      const res = await request(
        `${stack.url}/m`,
        { method: 'POST', headers: { 'x-dev': 'dev-a', 'content-length': '4' } },
        'copy',
      );
      assert.equal(res.status, 202);
      await gotCopy.promise;
      assert.deepEqual(copies, ['POST /m copy']);
      const h2 = await request2(stack.url, { ':method': 'POST', ':path': '/m2', 'x-dev': 'dev-a' }, 'copy2');
      assert.equal(h2.headers[':status'], 202);
    } finally {
      await stack.close();
      app.close();
    }
  });
});
