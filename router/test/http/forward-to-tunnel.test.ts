import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  type ForwardOutcome,
  forwardHttp1,
  forwardHttp2,
  type TunnelTarget,
} from '@detour/router/http/forward-to-tunnel';
import {
  type HttpStreamOpen,
  TunnelCode,
  type TunnelStream,
  type TunnelStreamError,
} from '@detour/router/tunnel/index';
import { tunnelPair } from '@detour/router/tunnel/loopback-pair';

/**
 * The agent side alone: a node:http / node:http2 server forwards to a real tunnel whose CLI end is
 * scripted by each test, so every answer the CLI can give (and every failure) is exercised.
 */
describe('forwardHttp1 / forwardHttp2 (agent side) against a scripted CLI', () => {
  let pair: Awaited<ReturnType<typeof tunnelPair>>;
  let session: TunnelTarget;
  let cli: (stream: TunnelStream) => void;
  let outcomes: ForwardOutcome[];
  let h1: http.Server;
  let h2: http2.Http2Server;
  let h1Url: string;
  let h2Url: string;

  before(async () => {
    pair = await tunnelPair();
    session = { id: 'dev-a', mode: 'steal', targetPort: 8080, tunnel: pair.server };
    pair.client.on('stream', (stream) => cli(stream));
    const report = (outcome: ForwardOutcome) => outcomes.push(outcome);
    h1 = http.createServer((req, res) => forwardHttp1(req, res, session, report));
    h2 = http2.createServer();
    h2.on('stream', (stream, headers, _flags, raw) => forwardHttp2(stream, headers, raw, session, report));
    await new Promise<void>((resolve) => h1.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    h1Url = `http://127.0.0.1:${(h1.address() as AddressInfo).port}`;
    h2Url = `http://127.0.0.1:${(h2.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    outcomes = [];
  });

  /** Scripts a CLI that answers 200 and a first chunk, then waits; resolves with the error its stream gets. */
  const cliAnsweringUntilCancelled = (): Promise<TunnelStreamError> => {
    const cancelled = Promise.withResolvers<TunnelStreamError>();
    cli = (stream) => {
      stream.resume();
      stream.on('error', (error) => cancelled.resolve(error as TunnelStreamError));
      stream.writeHeaders({ status: 200, headers: [] });
      stream.write('first');
    };
    return cancelled.promise;
  };

  /** The one outcome reported is client_aborted (reported soon after the cancel: up to 50 × 5 ms). */
  const assertClientAborted = async () => {
    for (let i = 0; i < 50 && outcomes.length === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(outcomes, ['client_aborted']);
  };
  after(async () => {
    h1.closeAllConnections();
    h1.close();
    h2.close();
    await pair.close();
  });

  it('sends the request metadata the CLI needs, without hop-by-hop fields or Expect', async () => {
    const opened = Promise.withResolvers<HttpStreamOpen>();
    cli = (stream) => {
      opened.resolve(stream.open as HttpStreamOpen);
      stream.resume();
      stream.writeHeaders({ status: 204, headers: [] });
      stream.end();
    };
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = http.request(`${h1Url}/p?q=1`, {
        method: 'POST',
        agent: false,
        headers: {
          'x-dev': 'dev-a',
          'keep-alive': 'timeout=1',
          connection: 'keep-alive, x-hop',
          'x-hop': 'private',
          'content-length': '1',
        },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.end('x');
    });
    assert.equal(status, 204);
    const open = await opened.promise;
    assert.equal(open.method, 'POST');
    assert.equal(open.path, '/p?q=1');
    assert.equal(open.httpVersion, '1.1');
    assert.equal(open.session, 'dev-a');
    assert.equal(open.targetPort, 8080);
    assert.equal(open.authority, new URL(h1Url).host);
    assert.equal(open.upgrade, false);
    assert.deepEqual(
      open.headers.map(([name]) => name),
      ['x-dev', 'content-length', 'host'],
    );
    assert.deepEqual(outcomes, ['forwarded']);
  });

  it('a reset before the head becomes a 502 naming the session and the code', async () => {
    cli = (stream) =>
      stream.reset('DETOUR_LOCAL_APP_UNREACHABLE', 'nothing answered on 127.0.0.1:3000 (ECONNREFUSED)');
    const res = await fetch(`${h1Url}/`);
    assert.equal(res.status, 502);
    assert.equal(
      await res.text(),
      'detour: the local process of session dev-a is unreachable (DETOUR_LOCAL_APP_UNREACHABLE)\nnothing answered on 127.0.0.1:3000 (ECONNREFUSED)\n',
    );
    assert.deepEqual(outcomes, ['tunnel_failed']);
  });

  it('a reset after the head cuts the HTTP/1.1 response (the client sees an incomplete body)', async () => {
    cli = (stream) => {
      stream.writeHeaders({ status: 200, headers: [] });
      stream.write('partial');
      setTimeout(() => stream.reset('ECONNRESET', 'the local app closed the connection'), 20);
    };
    const res = await fetch(`${h1Url}/`);
    assert.equal(res.status, 200);
    await assert.rejects(res.text(), /terminated/);
    assert.deepEqual(outcomes, ['tunnel_failed']);
  });

  it('a CLI that ends without a head → 502', async () => {
    cli = (stream) => {
      stream.resume();
      stream.end();
    };
    const res = await fetch(`${h1Url}/`);
    assert.equal(res.status, 502);
    assert.match(await res.text(), /unreachable \(DETOUR_NO_RESPONSE\)/);
  });

  it('a malformed or invalid head from the CLI → 502, and the CLI end is reset', async () => {
    for (const head of [{ status: 'two hundred' }, { status: 200, headers: [['bad header name', 'x']] }]) {
      const reset = Promise.withResolvers<TunnelStreamError>();
      cli = (stream) => {
        stream.resume();
        stream.on('error', (error) => reset.resolve(error as TunnelStreamError));
        stream.writeHeaders(head);
      };
      const res = await fetch(`${h1Url}/`);
      assert.equal(res.status, 502);
      assert.match(
        await res.text(),
        /unreachable \(DETOUR_TUNNEL_PROTOCOL\)\nthe CLI sent a(n invalid| malformed) response head/,
      );
      assert.equal((await reset.promise).code, TunnelCode.protocol);
    }
  });

  it('an HTTP/2 client that resets its stream resets the tunnel stream', async () => {
    const cancelled = cliAnsweringUntilCancelled();
    const client = http2.connect(h2Url);
    try {
      const req = client.request({ ':path': '/long' });
      req.end();
      await once(req, 'data');
      req.close(http2.constants.NGHTTP2_CANCEL);
      assert.equal((await cancelled).code, TunnelCode.cancel);
      await assertClientAborted();
    } finally {
      client.close();
    }
  });

  it('HTTP/2: a reset after the head resets the stream; gRPC gets UNAVAILABLE in the trailers', async () => {
    cli = (stream) => {
      stream.resume();
      stream.writeHeaders({ status: 200, headers: [['content-type', 'application/grpc']] });
      stream.write(Buffer.from([0, 0, 0, 0, 0]));
      setTimeout(() => stream.reset('ECONNRESET', 'the local app went away'), 20);
    };
    const session2 = http2.connect(h2Url);
    try {
      const req = session2.request({
        ':method': 'POST',
        ':path': '/svc/M',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      req.resume();
      req.end();
      const [trailers] = (await once(req, 'trailers')) as [http2.IncomingHttpHeaders];
      assert.equal(trailers['grpc-status'], '14');
      assert.match(String(trailers['grpc-message']), /session dev-a is unreachable \(ECONNRESET\)/);

      const plain = session2.request({ ':path': '/plain' });
      plain.resume();
      plain.end();
      const [error] = (await once(plain, 'error')) as [Error & { code: string }];
      assert.equal(error.code, 'ERR_HTTP2_STREAM_ERROR');
      assert.match(error.message, /NGHTTP2_INTERNAL_ERROR/);
    } finally {
      session2.close();
    }
  });

  it('a client that leaves mid-response resets the tunnel stream (the CLI sees the cancel)', async () => {
    const cancelled = cliAnsweringUntilCancelled();
    const socket = net.connect((h1.address() as AddressInfo).port, '127.0.0.1');
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await once(socket, 'data');
    socket.destroy();
    const error = await cancelled;
    assert.equal(error.code, TunnelCode.cancel);
    await assertClientAborted();
  });

  it('a closed tunnel → 502 at once', async () => {
    const other = await tunnelPair();
    other.client.close();
    await once(other.server, 'close');
    const closed: TunnelTarget = { id: 'dev-b', mode: 'steal', targetPort: 8080, tunnel: other.server };
    const server = http.createServer((req, res) => forwardHttp1(req, res, closed));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      assert.equal(res.status, 502);
      assert.match(
        await res.text(),
        /^detour: the local process of session dev-b is unreachable \(DETOUR_TUNNEL_CLOSED\)/,
      );
    } finally {
      server.closeAllConnections();
      server.close();
      await other.close();
    }
  });
});
