import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { WebSocket, WebSocketServer } from 'ws';
import { loadEcho } from '../../../tests/support/apps/echo-proto.ts';
import { listen, portOf, type Stack, startStack } from './stack.ts';

interface Message {
  text: string;
  seq: number;
}

type EchoClient = grpc.Client & {
  Say(
    message: Message,
    metadata: grpc.Metadata,
    callback: (error: grpc.ServiceError | null, reply: Message) => void,
  ): void;
  Chat(metadata: grpc.Metadata): grpc.ClientDuplexStream<Message, Message>;
};

const { Echo } = loadEcho();

function devA(): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('x-dev', 'dev-a');
  return metadata;
}

describe('gRPC through the inbound listener and the tunnel (grpc-js client and server)', () => {
  let server: grpc.Server;
  let stack: Stack & { tunnelAppPort: number };
  let client: EchoClient;

  before(async () => {
    server = new grpc.Server();
    server.addService(Echo.service, {
      Say(call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) {
        if (call.request.text === 'fail') {
          callback({ code: grpc.status.FAILED_PRECONDITION, details: 'asked to fail' });
          return;
        }
        const trailer = new grpc.Metadata();
        trailer.set('x-served-by', 'local');
        callback(
          null,
          {
            text: `local: ${call.request.text} (x-dev=${call.metadata.get('x-dev')[0]})`,
            seq: call.request.seq + 1,
          },
          trailer,
        );
      },
      Chat(call: grpc.ServerDuplexStream<Message, Message>) {
        call.on('data', (message: Message) => call.write({ text: `echo ${message.text}`, seq: message.seq }));
        call.on('end', () => call.end());
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    stack = Object.assign(await startStack({ appPort: port }), { tunnelAppPort: port });
    client = new Echo(
      `127.0.0.1:${stack.inbound.port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as EchoClient;
  });
  after(async () => {
    client.close();
    await stack.close();
    server.forceShutdown();
  });

  it('unary call: the reply, and trailing metadata (grpc-status in HTTP/2 trailers)', async () => {
    let trailers: grpc.Metadata | undefined;
    const reply = await new Promise<Message>((resolve, reject) => {
      const call = client.Say({ text: 'hi', seq: 1 }, devA(), (error, message) =>
        error ? reject(error) : resolve(message),
      ) as unknown as grpc.ClientUnaryCall | undefined;
      call?.on('status', (status: grpc.StatusObject) => {
        trailers = status.metadata;
      });
    });
    assert.deepEqual(reply, { text: 'local: hi (x-dev=dev-a)', seq: 2 });
    assert.deepEqual(trailers?.get('x-served-by'), ['local']);
  });

  it('an error status from the local app reaches the caller (trailers-only response)', async () => {
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.Say({ text: 'fail', seq: 0 }, devA(), (e) => resolve(e as grpc.ServiceError)),
    );
    assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(error.details, 'asked to fail');
  });

  it('bidi streaming: each message answered while the call stays open', async () => {
    const call = client.Chat(devA());
    const replies: Message[] = [];
    for (let seq = 1; seq <= 5; seq++) {
      call.write({ text: `m${seq}`, seq });
      // Wait for each answer before sending the next: proves nothing is held back in between.
      const [reply] = (await once(call, 'data')) as [Message];
      replies.push(reply);
    }
    call.end();
    await once(call, 'end');
    assert.deepEqual(
      replies.map((reply) => reply.text),
      ['echo m1', 'echo m2', 'echo m3', 'echo m4', 'echo m5'],
    );
  });

  it('without a session the caller gets an error status at once, not a hang', async () => {
    const session = stack.registry.unregister('dev-a');
    assert.ok(session);
    try {
      const error = await new Promise<grpc.ServiceError>((resolve) =>
        client.Say({ text: 'x', seq: 0 }, devA(), (e) => resolve(e as grpc.ServiceError)),
      );
      // Trailers only, so the client shows why (an HTTP 404 would read "Received HTTP status code 404").
      assert.equal(error.code, grpc.status.UNAVAILABLE);
      assert.match(error.details, /no session on this agent matches POST \/detour\.test\.Echo\/Say/);
      assert.match(error.details, /No session is registered: start one with `detour`/);
    } finally {
      stack.registry.register(session);
    }
  });

  it('calls without the session header pass through to an h2c upstream; a local app down is UNAVAILABLE', async () => {
    const closed = await listen(http.createServer());
    const downPort = portOf(closed);
    closed.close();
    const other = await startStack({ appPort: downPort, upstream: `127.0.0.1:${stack.tunnelAppPort}` });
    const otherClient = new Echo(
      `127.0.0.1:${other.inbound.port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as EchoClient;
    try {
      const reply = await new Promise<Message>((resolve, reject) =>
        otherClient.Say({ text: 'plain', seq: 5 }, new grpc.Metadata(), (error, message) =>
          error ? reject(error) : resolve(message),
        ),
      );
      assert.deepEqual(reply, { text: 'local: plain (x-dev=undefined)', seq: 6 });
      const error = await new Promise<grpc.ServiceError>((resolve) =>
        otherClient.Say({ text: 'x', seq: 0 }, devA(), (e) => resolve(e as grpc.ServiceError)),
      );
      assert.equal(error.code, grpc.status.UNAVAILABLE);
      assert.match(error.details, /session dev-a is unreachable \(DETOUR_LOCAL_APP_UNREACHABLE\)/);
    } finally {
      otherClient.close();
      await other.close();
    }
  });
});

describe('WebSocket through an HTTP/1.1 Upgrade', () => {
  let app: http.Server;
  let wss: WebSocketServer;
  let upstream: http.Server;
  let upstreamWss: WebSocketServer;
  let stack: Stack;

  before(async () => {
    app = await listen(http.createServer());
    wss = new WebSocketServer({ server: app });
    wss.on('connection', (socket, req) => {
      if (req.url === '/drop') {
        socket.send('bye', () => socket.terminate());
        return;
      }
      socket.send(`hello from local, x-dev=${req.headers['x-dev']}`);
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
    upstream = await listen(http.createServer());
    upstreamWss = new WebSocketServer({ server: upstream });
    upstreamWss.on('connection', (socket) => {
      socket.send('hello from upstream');
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
    stack = await startStack({ appPort: portOf(app), upstream: `127.0.0.1:${portOf(upstream)}` });
  });
  after(async () => {
    await stack.close();
    wss.close();
    upstreamWss.close();
    app.close();
    upstream.close();
  });

  async function exchange(
    headers: Record<string, string>,
  ): Promise<{ greeting: string; echoes: (string | Buffer)[] }> {
    const socket = new WebSocket(`ws://127.0.0.1:${stack.inbound.port}/ws`, { headers });
    const messages: (string | Buffer)[] = [];
    const greeting = new Promise<string>((resolve) =>
      socket.once('message', (data) => resolve(String(data))),
    );
    await once(socket, 'open');
    const text = await greeting;
    socket.on('message', (data, isBinary) => messages.push(isBinary ? (data as Buffer) : String(data)));
    const big = Buffer.alloc(3 * 1024 * 1024, 0xab);
    socket.send('ping 1');
    socket.send(big);
    socket.send('ping 2');
    while (messages.length < 3) await once(socket, 'message');
    socket.close(1000, 'done');
    const [code] = await once(socket, 'close');
    assert.equal(code, 1000);
    return { greeting: text, echoes: messages };
  }

  it('echoes text and a 3 MB binary message through the tunnel, and closes cleanly', async () => {
    const { greeting, echoes } = await exchange({ 'x-dev': 'dev-a' });
    assert.equal(greeting, 'hello from local, x-dev=dev-a');
    assert.equal(echoes[0], 'ping 1');
    assert.ok(
      Buffer.isBuffer(echoes[1]) &&
        echoes[1].length === 3 * 1024 * 1024 &&
        echoes[1].every((b) => b === 0xab),
    );
    assert.equal(echoes[2], 'ping 2');
    for (let i = 0; i < 50 && stack.tunnel.server.openStreams > 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(stack.tunnel.server.openStreams, 0);
    for (let i = 0; i < 50 && stack.tunnel.client.openStreams > 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(stack.tunnel.client.openStreams, 0, 'the CLI end of a cleanly closed WebSocket is released');
  });

  it('a client that drops the connection abruptly: the local app sees the close, nothing leaks', async () => {
    const closedAtApp = new Promise<number>((resolve) =>
      wss.once('connection', (socket) => socket.once('close', (code) => resolve(code))),
    );
    const socket = new WebSocket(`ws://127.0.0.1:${stack.inbound.port}/ws`, {
      headers: { 'x-dev': 'dev-a' },
    });
    await once(socket, 'message');
    socket.terminate();
    assert.equal(await closedAtApp, 1006);
    const busy = () =>
      stack.tunnel.server.openStreams + stack.tunnel.client.openStreams + stack.inbound.connections > 0;
    for (let i = 0; i < 100 && busy(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(stack.tunnel.server.openStreams, 0);
    assert.equal(stack.tunnel.client.openStreams, 0);
    assert.equal(stack.inbound.connections, 0);
  });

  it('a local app that drops the connection abruptly: the client sees the close, nothing leaks', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${stack.inbound.port}/drop`, {
      headers: { 'x-dev': 'dev-a' },
    });
    const [message] = await once(socket, 'message');
    assert.equal(String(message), 'bye');
    const [code] = await once(socket, 'close');
    assert.equal(code, 1006);
    const busy = () =>
      stack.tunnel.server.openStreams + stack.tunnel.client.openStreams + stack.inbound.connections > 0;
    for (let i = 0; i < 100 && busy(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(stack.tunnel.server.openStreams, 0);
    assert.equal(stack.inbound.connections, 0);
  });

  it('passes a WebSocket without the session header through to the upstream', async () => {
    const { greeting, echoes } = await exchange({});
    assert.equal(greeting, 'hello from upstream');
    assert.equal(echoes[2], 'ping 2');
  });

  it('a local app that refuses the upgrade: the client gets its answer', async () => {
    const refusing = await listen(
      http.createServer((_req, res) => {
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.end('no websockets here');
      }),
    );
    const other = await startStack({ appPort: portOf(refusing) });
    try {
      const socket = new WebSocket(`ws://127.0.0.1:${other.inbound.port}/ws`, {
        headers: { 'x-dev': 'dev-a' },
      });
      socket.on('error', () => {});
      const [, res] = (await once(socket, 'unexpected-response')) as [unknown, http.IncomingMessage];
      assert.equal(res.statusCode, 403);
      let body = '';
      for await (const chunk of res) body += chunk;
      assert.equal(body, 'no websockets here');
      const busy = () => other.tunnel.server.openStreams + other.tunnel.client.openStreams > 0;
      for (let i = 0; i < 100 && busy(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(other.tunnel.server.openStreams, 0);
      assert.equal(other.tunnel.client.openStreams, 0);
    } finally {
      await other.close();
      refusing.close();
    }
  });
});
