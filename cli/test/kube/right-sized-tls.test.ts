// The TLS connection the port-forward WebSocket runs on (reads into one reused buffer, copied out
// at their size), against a real TLS server on loopback: the server is verified as tls.connect
// would, small and large reads arrive whole and in order, and a reader that stops reading stops
// the socket (backpressure), as with Node's own reads. What it saves (a full GC every few hundred
// requests against the kube-apiserver, which a Node server here does not provoke) is measured by
// `npm run bench:cluster` (CLI CPU per 1,000 requests).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { makeTestCertificate } from '../../../tests/support/test-certificate.ts';
import { connectRightSizedTls } from '../../src/kube/right-sized-tls.ts';

describe('right-sized TLS reads (the port-forward’s socket)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'detour-tls-'));
  const cert = makeTestCertificate(dir, ['apiserver.test']);
  let server: tls.Server;
  /** What each accepted connection does: set per test. */
  let serve: (socket: tls.TLSSocket) => void = () => {};
  let port = 0;

  before(async () => {
    server = tls.createServer(
      { key: readFileSync(cert.keyFile), cert: readFileSync(cert.certFile) },
      (socket) => serve(socket),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const connect = async () => {
    const socket = connectRightSizedTls({
      host: '127.0.0.1',
      port,
      servername: 'apiserver.test',
      ca: readFileSync(cert.certFile),
    });
    await new Promise((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return socket;
  };

  it('verifies the server against the CA and name given, and passes small reads whole', async () => {
    serve = (socket) => socket.on('data', (data) => socket.write(Buffer.alloc(150, data[0])));
    const socket = await connect();
    for (let i = 0; i < 200; i++) {
      socket.write(Buffer.of(i));
      const [data] = (await new Promise((resolve) => socket.once('data', (d) => resolve([d])))) as [Buffer];
      assert.deepEqual(data, Buffer.alloc(150, i));
    }
    socket.destroy();
    const wrongName = connectRightSizedTls({
      host: '127.0.0.1',
      port,
      servername: 'elsewhere.test',
      ca: readFileSync(cert.certFile),
    });
    await assert.rejects(
      new Promise((resolve, reject) => {
        wrongName.once('secureConnect', resolve);
        wrongName.once('error', reject);
      }),
      { code: 'ERR_TLS_CERT_ALTNAME_INVALID' },
    );
  });

  it('delivers 64 MiB whole and in order, and pauses the socket while the reader does not read', async () => {
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
    const expected = createHash('sha256');
    serve = (socket) => {
      let sent = 0;
      const more = () => {
        while (sent < 64) {
          const block = Buffer.from(chunk);
          block.writeUInt32BE(sent);
          expected.update(block);
          sent++;
          if (!socket.write(block)) return void socket.once('drain', more);
        }
        socket.end();
      };
      more();
    };
    const socket = await connect();
    // Nobody reads for a while: the socket stops reading once its buffer is full.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(socket.readableLength <= 1 << 20, `buffered ${socket.readableLength} bytes unread`);
    const got = createHash('sha256');
    let bytes = 0;
    for await (const data of socket) {
      got.update(data as Buffer);
      bytes += (data as Buffer).length;
    }
    assert.equal(bytes, 64 << 20);
    assert.equal(got.digest('hex'), expected.digest('hex'));
  });
});
