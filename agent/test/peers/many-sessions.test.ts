// Many developers on one two-replica agent: 50 steal sessions (x-dev: dev-0 ... dev-49), held
// alternately by replica a and replica b through tunnels of their own, each delivering to a local
// app of its own. Every session's requests, sent to either replica, reach that session's app and
// no other; a header no session holds reaches none.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { request } from '../inbound/clients.ts';
import { listen, portOf } from '../inbound/stack.ts';
import { holdSession, type Replica, replica } from './replica-stack.ts';

const sessions = 50;

describe('50 sessions across two replicas', () => {
  let a: Replica;
  let b: Replica;
  const apps: http.Server[] = [];
  const held: Array<{ close(): Promise<void> }> = [];
  /** Requests each session's app received, by the x-dev they carried. */
  const received = new Map<number, string[]>();

  before(async () => {
    a = await replica('agent-a');
    b = await replica('agent-b');
    for (let i = 0; i < sessions; i++) {
      const app = await listen(
        http.createServer((req, res) => {
          received.set(i, [...(received.get(i) ?? []), String(req.headers['x-dev'])]);
          res.end(`dev-${i}`);
        }),
      );
      apps.push(app);
      const filter = { headers: { 'x-dev': { exact: `dev-${i}` } } };
      held.push(await holdSession(i % 2 === 0 ? a : b, [a, b], `dev-${i}`, filter, portOf(app)));
    }
  });

  after(async () => {
    await Promise.all([a.inbound.close(), b.inbound.close()]);
    for (const h of held) await h.close();
    for (const app of apps) app.close();
  });

  it('delivers each session’s requests, sent to either replica, to its own app only', async () => {
    const answers = await Promise.all(
      Array.from({ length: sessions }, (_, i) =>
        Promise.all([a, b].map((r) => request(`${r.url}/`, { headers: { 'x-dev': `dev-${i}` } }))),
      ),
    );
    answers.forEach((pair, i) => {
      for (const answer of pair) {
        assert.equal(answer.status, 200);
        assert.equal(answer.body.toString(), `dev-${i}`);
      }
      assert.deepEqual(received.get(i), [`dev-${i}`, `dev-${i}`]);
    });
    const stranger = await request(`${a.url}/`, { headers: { 'x-dev': 'dev-50' } });
    assert.equal(stranger.status, 404);
    assert.equal(received.size, sessions);
  });
});
