import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import { AdminListener } from '../../src/inbound/admin-listener.ts';
import { MetricsRegistry } from '../../src/inbound/metrics.ts';
import { curl, request } from './clients.ts';
import { listen, portOf, startStack } from './stack.ts';

describe('MetricsRegistry', () => {
  it('renders counters and collected values in the Prometheus text format', () => {
    const metrics = new MetricsRegistry();
    const requests = metrics.counter('demo_requests_total', 'Requests by outcome.', ['outcome']);
    const ok = requests.labels({ outcome: 'ok' });
    ok.inc();
    ok.inc(2);
    requests.inc({ outcome: 'fail "quoted"\n' });
    metrics.value('demo_open', 'Open things.', () => 7);
    metrics.collected('demo_bytes_total', 'Bytes.', 'counter', ['direction'], () => [
      [{ direction: 'in' }, 10],
    ]);
    assert.equal(
      metrics.render(),
      [
        '# HELP demo_requests_total Requests by outcome.',
        '# TYPE demo_requests_total counter',
        'demo_requests_total{outcome="ok"} 3',
        'demo_requests_total{outcome="fail \\"quoted\\"\\n"} 1',
        '# HELP demo_open Open things.',
        '# TYPE demo_open gauge',
        'demo_open 7',
        '# HELP demo_bytes_total Bytes.',
        '# TYPE demo_bytes_total counter',
        'demo_bytes_total{direction="in"} 10',
        '',
      ].join('\n'),
    );
    assert.equal(requests.get({ outcome: 'ok' }), 3);
  });

  it('refuses a metric registered twice', () => {
    const metrics = new MetricsRegistry();
    metrics.counter('twice_total', 'x');
    assert.throws(() => metrics.counter('twice_total', 'x'), { code: 'DETOUR_METRIC_DUPLICATE' });
  });
});

describe('AdminListener', () => {
  it('serves /healthz, /readyz and /metrics with the inbound counters, apart from the inbound port', async () => {
    const app = await listen(http.createServer((_req, res) => res.end('local')));
    const upstream = await listen(http.createServer((_req, res) => res.end('upstream')));
    const stack = await startStack({ appPort: portOf(app), upstream: `127.0.0.1:${portOf(upstream)}` });
    let ready: true | string = 'the tunnel listener is not up yet';
    const admin = await AdminListener.listen({
      metrics: stack.inbound.metrics,
      readiness: () => ready,
      host: '127.0.0.1',
    });
    const adminUrl = `http://127.0.0.1:${admin.port}`;
    try {
      assert.equal((await request(`${adminUrl}/healthz`)).status, 200);
      const notReady = await request(`${adminUrl}/readyz`);
      assert.equal(notReady.status, 503);
      assert.match(notReady.body.toString(), /not ready: the tunnel listener is not up yet/);
      ready = true;
      assert.equal((await request(`${adminUrl}/readyz`)).status, 200);

      await request(`${stack.url}/a`, { headers: { 'x-dev': 'dev-a' } });
      await request(`${stack.url}/b`);
      await curl(['-sS', '--http2-prior-knowledge', '-H', 'x-dev: dev-a', `${stack.url}/c`]);
      const scrape = await request(`${adminUrl}/metrics`);
      assert.equal(scrape.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
      const text = scrape.body.toString();
      assert.match(text, /^detour_inbound_requests_total\{outcome="forwarded"\} 2$/m);
      assert.match(text, /^detour_inbound_requests_total\{outcome="passthrough"\} 1$/m);
      assert.match(text, /^detour_inbound_connections_total\{protocol="http1"\} 2$/m);
      assert.match(text, /^detour_inbound_connections_total\{protocol="h2c"\} 1$/m);
      assert.match(text, /^detour_sessions\{mode="steal"\} 1$/m);
      assert.match(text, /^detour_tunnel_open_streams 0$/m);
      const received = Number(/^detour_inbound_bytes_total\{direction="received"\} (\d+)$/m.exec(text)?.[1]);
      const sent = Number(/^detour_inbound_bytes_total\{direction="sent"\} (\d+)$/m.exec(text)?.[1]);
      assert.ok(received > 100 && sent > 100, `bytes received ${received}, sent ${sent}`);
      assert.equal((await request(`${adminUrl}/other`)).status, 404);
    } finally {
      await admin.close();
      await stack.close();
      app.close();
      upstream.close();
    }
  });
});
