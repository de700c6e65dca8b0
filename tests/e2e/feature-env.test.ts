// Feature environments end to end on the local cluster with Istio, as the developer identity:
//   detour feature up e2e-pay -n staging --header x-dev=e2e-pay --workload payments=deploy/payments-v2
// routes x-dev: e2e-pay for payments to the payments-v2 pods (DestinationRule subset, then the
// VirtualService route) and returns once a probe through the agent was answered by a payments-v2
// pod; a local orders joins by stealing the same header (`detour exec --target deploy/orders
// --header x-dev=e2e-pay`), so from the caller pod x-dev: e2e-pay goes frontend → local orders →
// payments v2, and untagged requests reach v1 everywhere. Conflicts are refused naming the holder,
// bad input leaves the cluster untouched, `down` leaves every routing object as it was, and an
// expired environment is reverted by `detour clean` (or the agent's janitor, whichever runs first).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { waitFor } from '../cluster/wait.ts';
import { freePort } from '../support/ports.ts';
import type { ManagedProcess } from '../support/processes.ts';
import {
  callerGet,
  detourLeases,
  execOrdersArgs,
  routingObjects,
  runDetour,
  sampleNamespace,
  spiffe,
  startDetour,
  untouchedRoutingObjects,
  useSample,
} from './support.ts';

const name = 'e2e-pay';
const header = { 'x-dev': name };
const upArgs = [
  'feature',
  'up',
  name,
  '-n',
  sampleNamespace,
  '--header',
  `x-dev=${name}`,
  '--workload',
  'payments=deploy/payments-v2',
];

interface Hop {
  service?: string;
  version?: string;
  pod?: string;
  from?: string | null;
  called?: Array<{ status: number; body?: Hop }>;
}

/** frontend's answer to the caller, as the chain of hops (frontend, orders, payments). */
async function chain(headers: Record<string, string>): Promise<Hop[]> {
  const answer = await callerGet('http://frontend:8080/', headers);
  assert.equal(answer.status, 200, JSON.stringify(answer));
  const hops: Hop[] = [];
  for (let hop: Hop | undefined = answer.body as Hop; hop; hop = hop.called?.[0]?.body) hops.push(hop);
  return hops;
}

async function versions(headers: Record<string, string>): Promise<string[]> {
  return (await chain(headers)).map((h) => `${h.service} ${h.version}`);
}

async function down(): Promise<void> {
  const result = await runDetour(['feature', 'down', name, '-n', sampleNamespace]);
  assert.ok(
    result.code === 0 || /DETOUR_FEATURE_NOT_FOUND|no feature environment/.test(result.stderr),
    result.stderr,
  );
}

describe('detour feature up / list / down (issue 9)', () => {
  let before_: Record<string, unknown>;
  let local: ManagedProcess | undefined;

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    await down(); // an interrupted earlier run
    before_ = await untouchedRoutingObjects();
  });

  after(async () => {
    await local?.stop(10_000);
    await down();
  });

  it('bad input is refused with a clear error and the cluster untouched', async () => {
    const cases: Array<[string[], string, RegExp]> = [
      [
        [...upArgs.slice(0, -1), 'payments=deploy/orders-v2'],
        'DETOUR_WORKLOAD_NOT_SELECTED',
        /Service payments .*does not select the pods of Deployment staging\/orders-v2.*Services that do: orders/,
      ],
      [
        [...upArgs.slice(0, -1), 'payments=deploy/caller-v9'],
        'DETOUR_TARGET_NOT_FOUND',
        /no Deployment "caller-v9" in namespace staging; Deployments there: .*payments-v2/,
      ],
      [
        [...upArgs.slice(0, -1), 'nothing=deploy/payments-v2'],
        'DETOUR_TARGET_NOT_FOUND',
        /no Service "nothing"/,
      ],
      [[...upArgs, '--ttl', '8 hours'], 'DETOUR_BAD_DURATION', /--ttl "8 hours": not a duration/],
      [
        [...upArgs, '--mesh', 'gateway-api'],
        'DETOUR_BAD_OPTION',
        /supports --mesh istio or --mesh istio-envoyfilter/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const result = await runDetour([...args, '--json']);
      assert.equal(result.code, 2, `${args.join(' ')}\n${result.stderr}`);
      const failure = JSON.parse(result.stderr.trim().split('\n').at(-1) ?? '{}') as {
        code?: string;
        message?: string;
      };
      assert.equal(failure.code, code, result.stderr);
      assert.match(String(failure.message), message);
    }
    assert.deepEqual(await routingObjects(), before_, 'no routing object changed');
    assert.deepEqual(await detourLeases(), [], 'no Lease was created');
  });

  it('up returns once a probe with the header was answered by a payments-v2 pod; the header reaches v2, the rest v1', async () => {
    const started = Date.now();
    const result = await runDetour([...upArgs, '--json']);
    assert.equal(result.code, 0, result.stderr);
    console.log(`# detour feature up: ${Date.now() - started} ms`);
    const env = JSON.parse(result.stdout) as {
      name: string;
      services: Array<{ service: string; status: string; pod?: string; ms?: number; mesh: string }>;
    };
    const [payments] = env.services;
    assert.equal(payments?.status, 'live', result.stderr);
    assert.match(String(payments?.pod), /^payments-v2-/);
    assert.equal(payments?.mesh, 'istio');
    console.log(`# feature route write -> a payments-v2 pod answered the probe: ${payments?.ms} ms`);

    const direct = await callerGet('http://payments:8080/', header);
    assert.equal(direct.body.version, 'v2', JSON.stringify(direct));
    assert.match(String(direct.body.pod), /^payments-v2-/);
    assert.deepEqual(await versions(header), ['frontend v1', 'orders v1', 'payments v2']);
    for (const other of [{}, { 'x-dev': 'e2e-other' }] as Array<Record<string, string>>) {
      assert.deepEqual(
        await versions(other),
        ['frontend v1', 'orders v1', 'payments v1'],
        JSON.stringify(other),
      );
    }
  });

  it('feature list --json shows the environment: header, workloads, holder, expiry in 8 h', async () => {
    const result = await runDetour(['feature', 'list', '-n', sampleNamespace, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const listed = (JSON.parse(result.stdout) as Array<Record<string, unknown>>).find((f) => f.name === name);
    assert.ok(listed, result.stdout);
    assert.deepEqual(listed.filter, { headers: { 'x-dev': { exact: name } } });
    assert.deepEqual(
      (listed.services as Array<{ service: string; workload: string }>).map(
        (s) => `${s.service}=${s.workload}`,
      ),
      ['payments=Deployment/payments-v2'],
    );
    assert.equal(listed.alive, true);
    assert.match(String(listed.holder), /^[^@]+@[^@]+$/);
    const hours = (Date.parse(String(listed.expiresAt)) - Date.now()) / 3600_000;
    assert.ok(hours > 7.9 && hours <= 8, `expires in ${hours} h`);
  });

  it('a taken header or Service is refused naming the holder; the cluster untouched', async () => {
    const during = await routingObjects();
    const holder = (
      JSON.parse((await runDetour(['feature', 'list', '-n', sampleNamespace, '--json'])).stdout) as Array<{
        holder: string;
      }>
    )[0]?.holder as string;
    const sameHeader = await runDetour([
      'feature',
      'up',
      'e2e-other',
      '-n',
      sampleNamespace,
      '--header',
      `x-dev=${name}`,
      '--workload',
      'orders=deploy/orders-v2',
      '--json',
    ]);
    assert.equal(sameHeader.code, 2, sameHeader.stderr);
    assert.match(sameHeader.stderr, /DETOUR_FILTER_HELD/);
    assert.ok(sameHeader.stderr.includes(`session feature-${name} of ${holder}`), sameHeader.stderr);
    const stealPayments = await runDetour([
      'exec',
      '--target',
      'deploy/payments',
      '-n',
      sampleNamespace,
      '--header',
      `x-dev=${name}`,
      '--json',
      '--',
      'true',
    ]);
    assert.equal(stealPayments.code, 2, stealPayments.stderr);
    assert.ok(stealPayments.stderr.includes(`session feature-${name} of ${holder}`), stealPayments.stderr);
    assert.deepEqual(await routingObjects(), during, 'no routing object changed');
    assert.deepEqual(await detourLeases(), [`detour-feature-${name}`]);
  });

  it('a local orders joins by stealing the header: frontend -> local orders -> payments v2; untagged v1 everywhere', async () => {
    const port = await freePort();
    local = startDetour(execOrdersArgs(name, port, ['--json']));
    await waitFor(
      'x-dev: e2e-pay to be answered by the local orders app',
      async () => (await chain(header))[1]?.pod === 'laptop',
      { timeoutMs: 90_000, intervalMs: 500 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${local?.tail(20)}`);
    });
    const [frontend, orders, payments] = await chain(header);
    assert.equal(frontend?.version, 'v1');
    assert.equal(orders?.pod, 'laptop');
    assert.equal(payments?.version, 'v2', 'the local app’s call carried x-dev into the environment');
    assert.match(String(payments?.pod), /^payments-v2-/);
    assert.equal(payments?.from, spiffe('detour-agent'), 'the local app’s call left from the agent');
    for (const other of [{}, { 'x-dev': 'e2e-other' }] as Array<Record<string, string>>) {
      assert.deepEqual(
        await versions(other),
        ['frontend v1', 'orders v1', 'payments v1'],
        JSON.stringify(other),
      );
    }
    local.signal('SIGINT');
    await local.exited;
    local = undefined;
    assert.deepEqual(
      await versions(header),
      ['frontend v1', 'orders v1', 'payments v2'],
      'the environment stays',
    );
  });

  it('up again renews the TTL without touching the routes', async () => {
    const during = await routingObjects();
    const result = await runDetour([...upArgs, '--ttl', '30m', '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /"event":"feature.renewed"/);
    const listed = (
      JSON.parse((await runDetour(['feature', 'list', '-n', sampleNamespace, '--json'])).stdout) as Array<{
        name: string;
        expiresAt: string;
      }>
    ).find((f) => f.name === name);
    const minutes = (Date.parse(String(listed?.expiresAt)) - Date.now()) / 60_000;
    assert.ok(minutes > 29 && minutes <= 30, `expires in ${minutes} min`);
    assert.deepEqual(await routingObjects(), during, 'no route rewritten');
  });

  it('down: every routing object exactly as before, the Lease gone, the header back on v1', async () => {
    const result = await runDetour(['feature', 'down', name, '-n', sampleNamespace, '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await routingObjects(), before_);
    assert.deepEqual(await detourLeases(), []);
    await waitFor(
      'x-dev: e2e-pay back on payments v1',
      async () => (await versions(header)).at(-1) === 'payments v1',
      {
        timeoutMs: 10_000,
        intervalMs: 200,
      },
    );
    const again = await runDetour(['feature', 'down', name, '-n', sampleNamespace]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /no feature environment e2e-pay in namespace staging/);
  });

  it('an expired environment is reverted by detour clean (or the agent’s janitor)', async () => {
    const result = await runDetour([
      'feature',
      'up',
      'e2e-exp',
      '-n',
      sampleNamespace,
      '--header',
      'x-dev=e2e-exp',
      '--workload',
      'payments=deploy/payments-v2',
      '--ttl',
      '10s',
      '--route-timeout',
      '0',
      '--json',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.notDeepEqual(await routingObjects(), before_);
    await waitFor(
      'the environment’s Lease to expire',
      async () => {
        const listed = JSON.parse(
          (await runDetour(['feature', 'list', '-n', sampleNamespace, '--json'])).stdout,
        ) as Array<{ name: string; alive: boolean }>;
        const mine = listed.find((f) => f.name === 'e2e-exp');
        return mine === undefined || !mine.alive;
      },
      { timeoutMs: 30_000, intervalMs: 1000 },
    );
    const clean = await runDetour(['clean', '-n', sampleNamespace, '--json']);
    assert.equal(clean.code, 0, clean.stderr);
    const byClean = /"event":"clean.reverted".*feature-e2e-exp/.test(clean.stderr);
    console.log(
      `# expired environment reverted by ${byClean ? 'detour clean' : 'the agent’s janitor (it swept first)'}`,
    );
    await waitFor(
      'every routing object as before',
      async () => isDeepStrictEqual(await routingObjects(), before_),
      {
        timeoutMs: 10_000,
        intervalMs: 500,
      },
    );
    assert.deepEqual(await detourLeases(), []);
  });
});
