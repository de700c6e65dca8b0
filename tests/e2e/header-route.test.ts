// Issue 3, tier 3 on a real node: a VirtualService route `x-dev: dev-a -> orders subset v2`, written
// by the developer identity, steers requests from the caller pod through the sidecars (mTLS: the
// server-side sidecar reports the caller's SPIFFE identity); without the header they reach v1. And
// how long a route change takes to apply, measured from `kubectl replace` returning to the first
// answer from the new version (a request every ~10 ms from inside the caller pod).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { callerGet, median, putRoutes, spiffe, useSample, VersionWatch } from './support.ts';

const devRoute = {
  name: 'dev-a',
  match: [{ headers: { 'x-dev': { exact: 'dev-a' } } }],
  route: [{ destination: { host: 'orders', subset: 'v2' } }],
};
const defaultRoute = { name: 'default', route: [{ destination: { host: 'orders', subset: 'v1' } }] };

/** Writes `http`, returns ms from the write returning to the caller seeing `version` with the header. */
async function timeRouteChange(http: Array<Record<string, unknown>>, version: string): Promise<number> {
  const watch = new VersionWatch('http://orders:8080/', version, { 'x-dev': 'dev-a' });
  try {
    await watch.started();
    await putRoutes('orders', http);
    const written = Date.now();
    const { reachedAt } = await watch.reached();
    return reachedAt - written;
  } finally {
    await watch.process.stop();
  }
}

describe('tier 3: an x-dev VirtualService route through the sidecars', () => {
  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    await putRoutes('orders', [defaultRoute]);
  });

  after(async () => {
    await putRoutes('orders', [defaultRoute]).catch(() => {});
  });

  it('without the route, both requests reach orders v1', async () => {
    for (const headers of [{ 'x-dev': 'dev-a' }, {}] as Array<Record<string, string>>) {
      const answer = await callerGet('http://orders:8080/', headers);
      assert.equal(answer.status, 200);
      assert.equal(answer.body.version, 'v1');
    }
  });

  it('with the route, x-dev: dev-a reaches v2 and other requests v1, over mTLS between sidecars', async () => {
    const changes: number[] = [];
    const reverts: number[] = [];
    for (let round = 0; round < 3; round++) {
      changes.push(await timeRouteChange([devRoute, defaultRoute], 'v2'));
      for (let i = 0; i < 3; i++) {
        const dev = await callerGet('http://orders:8080/', { 'x-dev': 'dev-a' });
        assert.equal(dev.body.version, 'v2', JSON.stringify(dev));
        assert.match(String(dev.body.pod), /^orders-v2-/);
        assert.equal(
          dev.body.from,
          spiffe('caller'),
          'the server sidecar saw the caller sidecar’s certificate',
        );
        const other = await callerGet('http://orders:8080/', { 'x-dev': 'dev-b' });
        assert.equal(other.body.version, 'v1', JSON.stringify(other));
        const none = await callerGet('http://orders:8080/');
        assert.equal(none.body.version, 'v1', JSON.stringify(none));
      }
      reverts.push(await timeRouteChange([defaultRoute], 'v1'));
    }
    console.log(
      `# route change applied (write returned -> first answer from the new version): add ${changes.join(', ')} ms; ` +
        `remove ${reverts.join(', ')} ms; median ${median([...changes, ...reverts])} ms`,
    );
  });

  it('the header travels on: frontend -> orders v2 -> payments, x-dev and baggage propagated', async () => {
    await putRoutes('orders', [devRoute, defaultRoute]);
    const answer = await callerGet('http://frontend:8080/', { 'x-dev': 'dev-a', baggage: 'env=dev-a' });
    const orders = answer.body.called?.[0]?.body;
    assert.equal(orders?.version, 'v2', JSON.stringify(answer));
    assert.deepEqual(orders?.headers, { 'x-dev': 'dev-a', baggage: 'env=dev-a' });
    assert.equal(orders?.from, spiffe('frontend'));
    const payments = orders?.called?.[0]?.body;
    assert.equal(payments?.service, 'payments');
    assert.equal(payments?.from, spiffe('orders'));
    assert.deepEqual(payments?.headers, { 'x-dev': 'dev-a', baggage: 'env=dev-a' });
  });
});
