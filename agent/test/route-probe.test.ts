import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { InboundListener } from '../src/inbound/inbound-listener.ts';
import { RouteProbes } from '../src/route-probe.ts';
import { SessionRegistry } from '../src/session-registry.ts';

describe('route probes', () => {
  const probes = new RouteProbes();
  let inbound: InboundListener;
  let realPods: http.Server;

  before(async () => {
    inbound = await InboundListener.listen({ registry: new SessionRegistry(), host: '127.0.0.1', probes });
    realPods = http.createServer((_req, res) => res.end('the real pods')).listen(0, '127.0.0.1');
    await once(realPods, 'listening');
  });

  after(async () => {
    await inbound.close();
    realPods.close();
  });

  it('is live when the probe comes back to the agent that sent it', async () => {
    assert.deepEqual(await probes.probe(`http://127.0.0.1:${inbound.port}/`, { 'x-dev': 'dev-a' }), {
      live: true,
      detail: 'answered by this agent',
    });
  });

  it('is not live when someone else answers, or nobody does', async () => {
    const elsewhere = await probes.probe(`http://127.0.0.1:${(realPods.address() as AddressInfo).port}/`, {});
    assert.equal(elsewhere.live, false);
    assert.match(elsewhere.detail, /answered 200 by someone else/);
    const nowhere = await probes.probe('http://127.0.0.1:9/', {});
    assert.equal(nowhere.live, false);
    assert.match(nowhere.detail, /ECONNREFUSED/);
  });

  it('mirror: a copy reaching the agent after someone else answered counts (with copyWaitMs)', async () => {
    // The "real pods" answer and, like Envoy's mirror, send a copy to the agent's inbound port.
    const mirroring = http.createServer((req, res) => {
      const copy = http.request(`http://127.0.0.1:${inbound.port}/`, {
        method: 'HEAD',
        headers: req.headers,
      });
      copy.on('response', (r) => r.resume()).on('error', () => {});
      copy.end();
      res.writeHead(200, { 'x-detour-feature': 'feature-x upstream=127.0.0.1:1' }).end();
    });
    await once(mirroring.listen(0, '127.0.0.1'), 'listening');
    try {
      const url = `http://127.0.0.1:${(mirroring.address() as AddressInfo).port}/`;
      const copied = await probes.probe(url, {}, { copyWaitMs: 2_000, responseHeader: 'X-Detour-Feature' });
      assert.equal(copied.live, true, copied.detail);
      assert.match(copied.detail, /a copy reached this agent/);
      assert.equal(copied.header, 'feature-x upstream=127.0.0.1:1');
      const plain = await probes.probe(
        `http://127.0.0.1:${(realPods.address() as AddressInfo).port}/`,
        {},
        {
          copyWaitMs: 50,
        },
      );
      assert.equal(plain.live, false);
      assert.equal(plain.header, undefined);
    } finally {
      mirroring.close();
    }
  });

  it('answers only its own probes: a guessed marker goes the normal way', async () => {
    const response = await fetch(`http://127.0.0.1:${inbound.port}/`, {
      headers: { 'x-detour-probe': 'guessed' },
    });
    assert.equal(response.status, 404);
    assert.equal(response.headers.get('x-detour-probe'), null);
  });
});
