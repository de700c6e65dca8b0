// The forwarding decision between replicas of one agent, on real sockets: two inbound listeners
// (replicas a and b), each with its own session table and directory; b holds a session through a
// real tunnel to a "CLI" that delivers to a local app. Requests of that session sent to a reach
// the app through b, as the mesh delivered them; nothing else is forwarded, never twice.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { LEASE_ANNOTATIONS } from '@detour/mesh-adapters';
import { SESSION_LABEL } from '@detour/mesh-adapters/session-records';
import type { RouteFilter } from '@detour/router/match/index';
import { request, request2 } from '../inbound/clients.ts';
import { devA, listen, portOf } from '../inbound/stack.ts';
import { holdSession, type Replica, replica, servedByLease } from './replica-stack.ts';

const ordersHost = 'orders.staging.svc.cluster.local';

function lease(sessionId: string, pod: string, port: number, filter: RouteFilter = devA) {
  return servedByLease(sessionId, pod, port, filter, ordersHost);
}

const outcome = (r: Replica, name: string) =>
  r.inbound.metrics
    .render()
    .match(new RegExp(`^detour_inbound_requests_total\\{outcome="${name}"\\} (\\d+)$`, 'm'))?.[1];

describe('replicas forward the requests of a session another replica holds', () => {
  let a: Replica;
  let b: Replica;
  let app: http.Server;
  let held: { close(): Promise<void> };
  /** What the local app saw of each request. */
  const seen: Array<{ host: string | undefined; headers: http.IncomingHttpHeaders }> = [];

  before(async () => {
    app = await listen(
      http.createServer((req, res) => {
        seen.push({ host: req.headers.host, headers: req.headers });
        res.end(`local ${req.url}`);
      }),
    );
    a = await replica('agent-a');
    b = await replica('agent-b');
    held = await holdSession(b, [a, b], 'dev-a', devA, portOf(app), ordersHost);
  });

  after(async () => {
    await Promise.all([a.inbound.close(), b.inbound.close()]);
    await held.close();
    app.close();
  });

  it('sends a matched HTTP/1.1 request to the holder; the app sees it as the mesh delivered it', async () => {
    const answer = await request(`${a.url}/orders/1`, {
      headers: { host: `${ordersHost}:8080`, 'x-dev': 'dev-a' },
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.body.toString(), 'local /orders/1');
    assert.equal(
      answer.headers['x-detour-forwarded-by'],
      'agent-a',
      'the answer names the replica that forwarded it',
    );
    const last = seen.at(-1);
    assert.equal(last?.host, `${ordersHost}:8080`);
    assert.equal(last?.headers['x-detour-forwarded-by'], undefined);
    assert.equal(last?.headers['x-detour-forwarded-host'], undefined);
    assert.equal(outcome(a, 'to_peer'), '1');
    assert.equal(outcome(b, 'forwarded'), '1');
    assert.equal(b.directory.size, 0, 'b does not list the session it holds itself');
  });

  it('sends an HTTP/2 (h2c) request the same way', async () => {
    const answer = await request2(a.url, {
      ':method': 'GET',
      ':path': '/h2',
      ':authority': `orders:8080`,
      'x-dev': 'dev-a',
    });
    assert.equal(answer.headers[':status'], 200);
    assert.equal(answer.body.toString(), 'local /h2');
    assert.equal(seen.at(-1)?.host, 'orders:8080');
    assert.equal(outcome(b, 'forwarded'), '2');
  });

  it('keeps what no session takes: another header value, another host', async () => {
    const other = await request(`${a.url}/`, { headers: { host: ordersHost, 'x-dev': 'dev-b' } });
    assert.equal(other.status, 404);
    const payments = await request(`${a.url}/`, { headers: { host: 'payments', 'x-dev': 'dev-a' } });
    assert.equal(payments.status, 404);
    assert.equal(outcome(a, 'to_peer'), '2');
  });

  it('never forwards twice: a session both think the other holds gets a 404 that says so', async () => {
    const gone = { headers: { 'x-dev': { exact: 'gone' } } };
    a.directory.update(lease('gone', 'agent-b', b.inbound.port, gone));
    b.directory.update(lease('gone', 'agent-a', a.inbound.port, gone));
    const answer = await request(`${a.url}/`, { headers: { host: ordersHost, 'x-dev': 'gone' } });
    assert.equal(answer.status, 404);
    assert.match(answer.body.toString(), /The agent replica agent-a forwarded it here/);
    assert.equal(outcome(b, 'to_peer'), '0');
    a.directory.remove('detour-gone');
    b.directory.remove('detour-gone');
  });

  it('answers 502 naming the holder when the holder does not answer', async () => {
    const closed = await listen(http.createServer());
    const port = portOf(closed);
    await new Promise((resolve) => closed.close(resolve));
    a.directory.update(lease('dev-a', 'agent-c', port));
    const answer = await request(`${a.url}/`, { headers: { host: ordersHost, 'x-dev': 'dev-a' } });
    assert.equal(answer.status, 502);
    assert.match(
      answer.body.toString(),
      /held by the agent replica agent-c \(127\.0\.0\.1:\d+\), which failed \(ECONNREFUSED\)/,
    );
    assert.match(a.inbound.metrics.render(), /^detour_inbound_errors_total\{kind="peer"\} 1$/m);
    // The session moves back to b (its CLI reconnected there): served again.
    a.directory.update(lease('dev-a', 'agent-b', b.inbound.port));
    assert.equal(
      (await request(`${a.url}/x`, { headers: { host: ordersHost, 'x-dev': 'dev-a' } })).status,
      200,
    );
  });

  it('serves a session it holds too itself; forwards it to the other holder once its own tunnel is gone', async () => {
    const both = lease('dev-a', 'agent-b', b.inbound.port);
    const annotations = both.metadata?.annotations ?? {};
    const served = JSON.parse(annotations[LEASE_ANNOTATIONS.servedBy] ?? '{}');
    served.holders.unshift({ pod: 'agent-a', address: `127.0.0.1:${a.inbound.port}` });
    annotations[LEASE_ANNOTATIONS.servedBy] = JSON.stringify(served);
    a.directory.update(both);
    const own = await holdSession(a, [], 'dev-a', devA, portOf(app), ordersHost);
    const toPeer = outcome(a, 'to_peer');
    const local = await request(`${a.url}/own`, { headers: { host: ordersHost, 'x-dev': 'dev-a' } });
    assert.equal(local.status, 200);
    assert.equal(local.headers['x-detour-forwarded-by'], undefined, 'no hop: a holds the tunnel too');
    assert.equal(outcome(a, 'to_peer'), toPeer);
    // a's tunnel drops (its pod shuts down, the port-forward broke): the mesh still sends requests
    // to a for a while, and b holds the session.
    await own.close();
    a.registry.unregister('dev-a');
    const hop = await request(`${a.url}/hop`, { headers: { host: ordersHost, 'x-dev': 'dev-a' } });
    assert.equal(hop.status, 200);
    assert.equal(hop.body.toString(), 'local /hop');
    assert.equal(hop.headers['x-detour-forwarded-by'], 'agent-a');
  });

  it('answers a route probe another replica sent that no session takes (doctor’s probe of the agent Service)', async () => {
    const answer = await request(`${a.url}/`, { headers: { 'x-detour-probe': 'nonce-of-b' } });
    assert.equal(answer.status, 204);
    assert.equal(answer.headers['x-detour-probe'], 'nonce-of-b');
  });

  it('forgets a session whose Lease is gone, or names no holder', async () => {
    a.directory.remove('detour-dev-a');
    assert.equal(
      (await request(`${a.url}/`, { headers: { host: ordersHost, 'x-dev': 'dev-a' } })).status,
      404,
    );
    a.directory.update({ metadata: { name: 'detour-dev-a', labels: { [SESSION_LABEL]: 'dev-a' } } });
    assert.equal(a.directory.size, 0);
    a.directory.update(lease('dev-a', 'agent-b', b.inbound.port));
    assert.equal(a.directory.size, 1);
  });
});
