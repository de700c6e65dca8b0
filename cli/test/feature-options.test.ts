// `detour feature up|list|down` input: everything wrong is refused before the cluster is touched
// (the CLI below runs with a kubeconfig that points nowhere, so reaching the cluster would fail
// differently), with a message naming the value and the fix.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseFeatureUp } from '../src/commands/feature-command.ts';
import { parseDuration } from '../src/feature/duration.ts';

const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const upArgs = ['pay', '-n', 'staging', '--header', 'x-dev=pay', '--workload', 'payments=deploy/payments-v2'];

describe('detour feature options', () => {
  it('parses up: name, namespace, header, workloads, TTL (default 8h)', () => {
    const options = parseFeatureUp([...upArgs, '--workload', 'orders:8080=deploy/orders-v2', '--json']);
    assert.deepEqual(options, {
      name: 'pay',
      namespace: 'staging',
      filter: { headers: { 'x-dev': { exact: 'pay' } } },
      workloads: [
        { service: 'payments', workload: 'deploy/payments-v2' },
        { service: 'orders', workload: 'deploy/orders-v2', port: 8080 },
      ],
      ttlSeconds: 8 * 3600,
      agentService: 'detour-agent',
      routeTimeout: 30,
      json: true,
    });
    assert.equal(parseFeatureUp([...upArgs, '--ttl', '1h30m']).ttlSeconds, 5400);
    assert.equal(parseFeatureUp([...upArgs, '--mesh', 'istio-envoyfilter']).mesh, 'istio-envoyfilter');
  });

  it('Go-style durations', () => {
    const bounds = { min: 10, max: 7 * 24 * 3600 };
    assert.equal(parseDuration('30m', '--ttl', bounds), 1800);
    assert.equal(parseDuration('8h', '--ttl', bounds), 28800);
    assert.equal(parseDuration('1.5h', '--ttl', bounds), 5400);
    assert.equal(parseDuration('2m30s', '--ttl', bounds), 150);
    for (const bad of ['8', '8x', 'h', '-1h', '1d', ' 8h', '5s', '200h']) {
      assert.throws(
        () => parseDuration(bad, '--ttl', bounds),
        (e: Error & { code?: string }) =>
          e.code === 'DETOUR_BAD_DURATION' &&
          e.message.includes(JSON.stringify(bad)) &&
          /30m, 8h/.test(e.message),
        bad,
      );
    }
  });

  it('refuses bad input naming the value and the fix', () => {
    const cases: Array<[string[], RegExp]> = [
      [['-n', 'staging', '--header', 'x-dev=a', '--workload', 'a=deploy/b'], /needs the environment's name/],
      [['Pay_1', ...upArgs.slice(1)], /name "Pay_1"/],
      [['pay', '-n', 'staging', '--workload', 'payments=deploy/payments-v2'], /--header x-dev=pay/],
      [['pay', '-n', 'staging', '--header', 'x-dev=pay'], /at least one --workload/],
      [[...upArgs, '--workload', 'payments'], /--workload "payments": expected SERVICE=deploy\/WORKLOAD/],
      [[...upArgs, '--workload', 'payments=deploy/payments-v3'], /Service payments is named twice/],
      [[...upArgs, '--ttl', 'forever'], /--ttl "forever": not a duration/],
      [[...upArgs, '--mesh', 'gateway-api'], /supports --mesh istio or --mesh istio-envoyfilter/],
      [[...upArgs, '--mesh', 'service'], /own namespace and use detour exec --steal-all/],
      [[...upArgs, '--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [argv, message] of cases) assert.throws(() => parseFeatureUp(argv), message, argv.join(' '));
  });

  it('the CLI exits 2 with the error before touching the cluster', () => {
    const run = spawnSync(process.execPath, [main, 'feature', 'up', ...upArgs, '--ttl', '8x', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, KUBECONFIG: '/nonexistent/kubeconfig' },
    });
    assert.equal(run.status, 2, run.stderr);
    const line = JSON.parse(run.stderr.trim().split('\n').at(-1) ?? '{}');
    assert.equal(line.code, 'DETOUR_BAD_DURATION');
    const unknown = spawnSync(process.execPath, [main, 'feature', 'sideways'], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /expected up, list or down/);
  });
});
