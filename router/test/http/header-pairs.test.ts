import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  flattenPairs,
  grpcMessage,
  headerPairsFromRaw,
  pairsFromHttp2,
  pairsToHttp2,
} from '@detour/router/http/header-pairs';

describe('headerPairsFromRaw', () => {
  it('drops hop-by-hop fields (RFC 9110 §7.6.1) and the ones Connection lists, keeps order and repeats', () => {
    const raw = [
      'Host',
      'orders:8080',
      'Connection',
      'keep-alive, X-Hop',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'Proxy-Connection',
      'keep-alive',
      'X-Hop',
      'secret',
      'Upgrade',
      'h2c',
      'HTTP2-Settings',
      'AAMAAABkAAQAoAAAAAIAAAAA',
      'Cookie',
      'a=1',
      'Cookie',
      'b=2',
      'X-Dev',
      'dev-a',
    ];
    assert.deepEqual(headerPairsFromRaw(raw), [
      ['host', 'orders:8080'],
      ['cookie', 'a=1'],
      ['cookie', 'b=2'],
      ['x-dev', 'dev-a'],
    ]);
  });

  it('keeps `te: trailers` only (gRPC needs it; HTTP/2 allows nothing else)', () => {
    assert.deepEqual(headerPairsFromRaw(['TE', 'trailers']), [['te', 'trailers']]);
    assert.deepEqual(headerPairsFromRaw(['TE', 'gzip, trailers;q=1']), []);
  });

  it('keeps Upgrade and Connection: upgrade for an upgrade, and drops HTTP/2 pseudo-headers', () => {
    assert.deepEqual(
      headerPairsFromRaw(
        [
          ':method',
          'GET',
          'Connection',
          'Upgrade, keep-alive',
          'Upgrade',
          'websocket',
          'Sec-WebSocket-Key',
          'k',
        ],
        { keepUpgrade: true },
      ),
      [
        ['connection', 'upgrade'],
        ['upgrade', 'websocket'],
        ['sec-websocket-key', 'k'],
      ],
    );
  });

  it('drops extra names on request', () => {
    assert.deepEqual(
      headerPairsFromRaw(['Expect', '100-continue', 'A', '1'], { drop: new Set(['expect']) }),
      [['a', '1']],
    );
  });
});

describe('HTTP/2 header objects', () => {
  it('repeated names become arrays, host becomes nothing (it is :authority)', () => {
    assert.deepEqual(
      pairsToHttp2(
        [
          ['set-cookie', 'a=1'],
          ['set-cookie', 'b=2'],
          ['host', 'x'],
          ['x-one', '1'],
        ],
        { ':status': 200 },
      ),
      { ':status': 200, 'set-cookie': ['a=1', 'b=2'], 'x-one': '1' },
    );
  });

  it('back to pairs without pseudo-headers and connection-specific fields', () => {
    assert.deepEqual(
      pairsFromHttp2({ ':status': 200, 'set-cookie': ['a', 'b'], 'content-length': 3, connection: 'x' }),
      [
        ['set-cookie', 'a'],
        ['set-cookie', 'b'],
        ['content-length', '3'],
      ],
    );
  });

  it('flattens pairs for node:http', () => {
    assert.deepEqual(flattenPairs([['a', '1']], [['b', '2']]), ['a', '1', 'b', '2']);
  });
});

describe('grpcMessage', () => {
  it('percent-encodes only what the gRPC spec says: non-printable bytes and %', () => {
    assert.equal(grpcMessage('a: b/c, 100% \n é'), 'a: b/c, 100%25 %0A %C3%A9');
  });
});
