/**
 * Inbound path end to end with real processes and real clients: a caller in the cluster namespace
 * sends to the agent in the pod namespace; requests with `x-dev: dev-a` travel the tunnel to the
 * CLI in the laptop namespace and its local app, the rest pass through to the "real pods".
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { inbound, inboundUrl, ports, Rig, supportDir } from '../support/detour.ts';
import { addresses } from '../support/netns.ts';
import { payloadSha256, payloadStream } from '../support/payload.ts';
import { waitFor } from '../support/wait.ts';

const mb100 = 100 * 1024 * 1024;

describe('inbound: cluster caller → agent → tunnel → CLI → local app', { timeout: 300_000 }, () => {
  let rig: Rig;
  let work: string;

  before(async () => {
    rig = new Rig('in');
    work = await mkdtemp(join(tmpdir(), 'detour-it-'));
    await rig.startApp('cluster', 'remote', { port: ports.remoteApp, host: addresses.cluster });
    await rig.startAgent();
    await rig.startLocalAppSession('dev-a', 'dev-a');
  });

  after(async () => {
    await rig?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('curl HTTP/1.1: x-dev: dev-a reaches the local app, no header reaches the real pods', async () => {
    const local = await rig.curl('cluster', ['-sS', ...inbound('/hello?q=1', 'dev-a')]);
    assert.equal(local.code, 0, local.stderr);
    const localBody = JSON.parse(local.stdout);
    assert.equal(localBody.app, 'local');
    assert.equal(localBody.path, '/hello?q=1');
    assert.equal(localBody.headers['x-dev'], 'dev-a');

    const remote = await rig.curl('cluster', ['-sS', ...inbound('/hello')]);
    assert.equal(remote.code, 0, remote.stderr);
    assert.equal(JSON.parse(remote.stdout).app, 'remote');

    const other = await rig.curl('cluster', ['-sS', ...inbound('/hello', 'dev-b')]);
    assert.equal(JSON.parse(other.stdout).app, 'remote', 'another developer’s value is not ours');
  });

  test('curl --http2-prior-knowledge (h2c) both ways', async () => {
    const local = await rig.curl('cluster', ['-sS', '--http2-prior-knowledge', ...inbound('/h2', 'dev-a')]);
    assert.equal(local.code, 0, local.stderr);
    const body = JSON.parse(local.stdout);
    assert.equal(body.app, 'local');
    assert.equal(body.httpVersion, '2.0', 'an h2c request reaches the local app over HTTP/2');

    const remote = await rig.curl('cluster', ['-sS', '--http2-prior-knowledge', ...inbound('/h2')]);
    assert.equal(remote.code, 0, remote.stderr);
    assert.equal(JSON.parse(remote.stdout).app, 'remote');
  });

  test('h2load burst: 2,000 requests over 10 connections × 20 streams, all 2xx', async () => {
    const before = JSON.parse((await rig.curl('cluster', ['-sS', ...inbound('/stats', 'dev-a')])).stdout);
    const result = await rig.sh(
      'cluster',
      `h2load -n 2000 -c 10 -m 20 -H 'x-dev: dev-a' ${inboundUrl}/burst`,
      60_000,
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored/,
    );
    assert.match(result.stdout, /status codes: 2000 2xx/);
    const after = JSON.parse((await rig.curl('cluster', ['-sS', ...inbound('/stats', 'dev-a')])).stdout);
    assert.ok(after.requests - before.requests >= 2000, 'the burst was answered by the local app');
  });

  test('gRPC (grpc-js): unary and bidi streaming reach a local grpc-js server', async () => {
    await rig.startSession({
      name: 'dev-grpc',
      headers: ['x-dev=dev-grpc'],
      port: String(ports.localGrpc),
      command: [
        process.execPath,
        `${supportDir}apps/grpc-app.ts`,
        '--name',
        'local-grpc',
        '--port',
        String(ports.localGrpc),
      ],
    });
    const result = await waitFor({ what: 'the gRPC call to succeed', timeoutMs: 15_000 }, async () => {
      const answer = await rig.client('cluster', 'grpc-client.ts', [
        '--target',
        `${addresses.pod}:${ports.inbound}`,
        '--header',
        'x-dev=dev-grpc',
        '--messages',
        '20',
      ]);
      if (answer.json.error) throw new Error(String(answer.json.error));
      return answer.json;
    });
    assert.deepEqual(result.unary, { text: 'hello', app: 'local-grpc', dev: 'dev-grpc' });
    assert.equal(result.unaryTrailer, 'local-grpc', 'trailers (grpc-status, metadata) come back');
    const chat = result.chat as Array<{ text: string; app: string }>;
    assert.equal(chat.length, 20);
    assert.deepEqual(
      chat.map((m) => m.text),
      Array.from({ length: 20 }, (_, i) => `message ${i}`),
    );
    assert.ok(chat.every((m) => m.app === 'local-grpc'));
  });

  test('no local app on the mapped port: the caller gets a 502 with the fix, and the CLI says so once per 10 s', async () => {
    const cli = await rig.startSession({
      name: 'dev-noapp',
      headers: ['x-dev=dev-noapp'],
      port: '8080:3999',
    });
    for (let i = 0; i < 3; i++) {
      const result = await rig.curl('cluster', [
        '-sS',
        '-w',
        '\n%{http_code}',
        ...inbound(`/noapp/${i}`, 'dev-noapp'),
      ]);
      const lines = result.stdout.trim().split('\n');
      assert.equal(lines.at(-1), '502', result.stdout);
      assert.match(
        lines.join('\n'),
        /nothing answered on 127\.0\.0\.1:3999 \(ECONNREFUSED\): start your app on port 3999/,
      );
    }
    const warned = await cli.waitForLine(
      'stderr',
      (line) => line.event === 'request.failed',
      'request.failed',
    );
    assert.match(
      String((warned as { message: string }).message),
      /^GET \/noapp\/0 for session dev-noapp reached this machine, but nothing answered on 127\.0\.0\.1:3999 \(ECONNREFUSED\): start your app/,
    );
    assert.equal(
      cli.jsonLines('stderr').filter((line) => line.event === 'request.failed').length,
      1,
      'the next two within 10 s are counted, not printed',
    );
    await cli.stop(5_000);
  });

  test('WebSocket upgrade: text and binary messages echo through the tunnel', async () => {
    const { json } = await rig.client('cluster', 'ws-client.ts', [
      '--url',
      `ws://${addresses.pod}:${ports.inbound}/ws`,
      '--header',
      'x-dev=dev-a',
      '--messages',
      '10',
    ]);
    assert.equal(json.error, undefined, JSON.stringify(json));
    const received = json.received as unknown[];
    assert.deepEqual(received[0], { app: 'local', hello: 'dev-a' });
    assert.deepEqual(
      received.slice(1, 11),
      Array.from({ length: 10 }, (_, n) => ({ n })),
    );
    assert.deepEqual(received[11], { binaryBytes: 100_000 });
    assert.equal(json.closeCode, 1000);
  });

  test('100 MB upload, checked by sha256', async () => {
    const file = join(work, 'upload.bin');
    const hash = createHash('sha256');
    const source = payloadStream(mb100);
    source.on('data', (chunk: Buffer) => hash.update(chunk));
    await pipeline(source, createWriteStream(file));
    const expected = hash.digest('hex');
    const result = await rig.curl('cluster', ['-sS', '-T', file, ...inbound('/upload', 'dev-a')], 120_000);
    assert.equal(result.code, 0, result.stderr);
    const body = JSON.parse(result.stdout);
    assert.equal(body.app, 'local');
    assert.equal(body.bytes, mb100);
    assert.equal(body.sha256, expected);
  });

  test('100 MB download, checked by sha256', async () => {
    const expected = await payloadSha256(mb100);
    const result = await rig.sh(
      'cluster',
      `curl -sS --max-time 120 -H 'x-dev: dev-a' '${inboundUrl}/download?bytes=${mb100}' | sha256sum`,
      130_000,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.split(' ')[0], expected);
  });

  test('1,000 concurrent streams all in flight at the local app at once', async () => {
    const { json } = await rig.client(
      'cluster',
      'h2-streams.ts',
      [
        '--url',
        `${inboundUrl}/barrier?n=1000&timeoutMs=20000`,
        '--streams',
        '1000',
        '--connections',
        '10',
        '--header',
        'x-dev=dev-a',
      ],
      60_000,
    );
    assert.deepEqual(json.statuses, { 200: 1000 }, JSON.stringify(json));
  });

  test('a slow consumer does not stall fast requests beside it', async () => {
    // 40 MB read at 1 MB/s would take 40 s; the fast requests must finish long before.
    const slow = rig.start('cluster', 'slow consumer', [
      'curl',
      '-sS',
      '--limit-rate',
      '1M',
      '-o',
      '/dev/null',
      '-H',
      'x-dev: dev-a',
      `${inboundUrl}/download?bytes=${40 * 1024 * 1024}`,
    ]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const started = Date.now();
      const fast = await rig.sh(
        'cluster',
        `h2load -n 500 -c 5 -m 10 -H 'x-dev: dev-a' ${inboundUrl}/fast && curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'x-dev: dev-a' '${inboundUrl}/download?bytes=${10 * 1024 * 1024}'`,
        30_000,
      );
      const elapsed = Date.now() - started;
      assert.equal(fast.code, 0, fast.stdout + fast.stderr);
      assert.match(fast.stdout, /500 succeeded/);
      assert.match(fast.stdout, /200$/);
      assert.ok(elapsed < 10_000, `fast requests took ${elapsed} ms beside a slow consumer`);
      assert.equal(slow.status, undefined, 'the slow download is still going');
    } finally {
      await slow.stop();
    }
  });

  for (const [protocol, flags] of [
    ['HTTP/1.1', []],
    ['h2c', ['--http2-prior-knowledge']],
  ] as const) {
    test(`${protocol} client aborts mid-response: the local app sees the reset, nothing leaks`, async () => {
      const stats = async () =>
        JSON.parse((await rig.curl('cluster', ['-sS', ...inbound('/stats', 'dev-a')])).stdout) as {
          aborted: number;
          inFlight: number;
        };
      const before = await stats();
      const hung = rig.start('cluster', 'hanging client', [
        'curl',
        '-sS',
        '-N',
        ...flags,
        ...inbound('/hang', 'dev-a'),
      ]);
      await hung.waitForLine('stdout', /started/, 'the /hang response to start');
      hung.signal('SIGKILL');
      await hung.exited;
      let last = before;
      const what = 'the local app to see the request aborted (aborted +1, only /stats in flight)';
      await waitFor(
        {
          what,
          timeoutMs: 10_000,
          detail: () => `before ${JSON.stringify(before)}, last ${JSON.stringify(last)}`,
        },
        async () => {
          const now = await stats();
          last = now;
          // inFlight 1: only the /stats request itself is left.
          return now.aborted === before.aborted + 1 && now.inFlight === 1;
        },
      );
      await assertNothingLeaks(rig);
    });

    test(`local app aborts mid-response over ${protocol}: the caller sees the body cut, nothing leaks`, async () => {
      const result = await rig.curl('cluster', [
        '-sS',
        '-o',
        '/dev/null',
        ...flags,
        ...inbound('/abort', 'dev-a'),
      ]);
      // 18: transfer closed with data outstanding (HTTP/1.1); 92: stream reset (HTTP/2); 56: recv failure.
      assert.ok([18, 56, 92].includes(result.code ?? 0), `curl exit ${result.code}: ${result.stderr}`);
      await assertNothingLeaks(rig);
    });
  }
});

/** The agent's open-stream gauge is back to 0 and no connection lingers on the inbound port. */
async function assertNothingLeaks(rig: Rig): Promise<void> {
  await waitFor(
    {
      what: 'detour_tunnel_open_streams to return to 0 and no inbound connection to linger',
      timeoutMs: 10_000,
      intervalMs: 250,
    },
    async () => {
      const metrics = await rig.metrics();
      const open = metrics.get('detour_tunnel_open_streams');
      if (open !== 0) throw new Error(`detour_tunnel_open_streams is ${open}`);
      // The scrape's own connection is on the admin port, not the inbound one.
      const connections = metrics.get('detour_inbound_open_connections');
      if (connections !== 0) throw new Error(`detour_inbound_open_connections is ${connections}`);
      const ss = await rig.sh('pod', `ss -Htn state established '( sport = :${ports.inbound} )'`);
      if (ss.stdout.trim()) throw new Error(`connections on :${ports.inbound}:\n${ss.stdout}`);
      return true;
    },
  );
}
