import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { DirectDialer } from '@detour/router/egress/direct-dialer';

test('DirectDialer connects with half-open sockets and reports errno codes', async () => {
  const server = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const dialer = new DirectDialer();
  try {
    const stream = await dialer.connect('127.0.0.1', port);
    stream.end('abc');
    let echoed = '';
    for await (const chunk of stream) echoed += chunk;
    assert.equal(echoed, 'abc');
    server.close();
    await assert.rejects(dialer.connect('127.0.0.1', port), { code: 'ECONNREFUSED' });
    const aborted = AbortSignal.abort();
    await assert.rejects(dialer.connect('127.0.0.1', port, aborted), { code: 'ABORT_ERR' });
    assert.deepEqual(await dialer.lookup('localhost', 4), [{ address: '127.0.0.1', family: 4 }]);
    await assert.rejects(dialer.lookup('no-such-name.invalid', 0), { code: 'ENOTFOUND' });
  } finally {
    server.close();
  }
});
