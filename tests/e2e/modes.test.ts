// The modes and inputs of issue 9 beside header steal, end to end on the local cluster with Istio,
// as the developer identity from manifests/rbac:
//   - egress-only: `detour up --egress-only --target deploy/orders -n staging` (the IDE way: `detour
//     env` gives the process its env) and `detour exec --egress-only -n staging -- cmd` (no target):
//     payments sees the agent's mesh identity, DNS answers from the cluster, no routing object
//     changes, `detour status --json` lists the session as egress-only with holder and age;
//   - filters through the real mesh: --path, --method, --baggage;
//   - detour.yaml read from the working directory;
//   - --env-secrets without the optional role (refused, naming the verb and the role) and with it;
//   - bad input (conflicting flags, no filter, unreadable or invalid config): a clear error, the
//     cluster untouched.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execInPod } from '../cluster/cluster.ts';
import { kubectlOk } from '../cluster/mesh.ts';
import { repoRoot } from '../cluster/paths.ts';
import { sampleImage } from '../cluster/sample/sample.ts';
import { waitFor } from '../cluster/wait.ts';
import { freePort } from '../support/ports.ts';
import { type ManagedProcess, run } from '../support/processes.ts';
import {
  type CallerAnswer,
  callerGet,
  detourLeases,
  developerKubectl,
  getVirtualService,
  interrupt,
  localOrders,
  routingObjects,
  runDetour,
  sampleNamespace,
  spiffe,
  startDetour,
  untouchedRoutingObjects,
  useSample,
  whenServing,
} from './support.ts';

const stateDir = mkdtempSync(join(tmpdir(), 'detour-modes-state-'));
const env = { DETOUR_STATE_DIR: stateDir };

/** kind/name → resourceVersion of every VirtualService and DestinationRule in the sample namespace. */
async function routingVersions(): Promise<Record<string, string>> {
  const list = JSON.parse(
    await developerKubectl(['-n', sampleNamespace, 'get', 'virtualservices,destinationrules', '-o', 'json']),
  ) as { items: Array<{ kind: string; metadata: { name: string; resourceVersion: string } }> };
  return Object.fromEntries(
    list.items.map((o) => [`${o.kind}/${o.metadata.name}`, o.metadata.resourceVersion]),
  );
}

/** A request from the caller pod with any method (callerGet only GETs). */
async function callerRequest(method: string, url: string, headers: Record<string, string> = {}) {
  const script = `const r = await fetch(${JSON.stringify(url)}, { method: ${JSON.stringify(method)}, headers: ${JSON.stringify(headers)} }); console.log(JSON.stringify({ status: r.status, body: await r.json() }));`;
  const result = await execInPod(sampleNamespace, 'caller', ['node', '--input-type=module', '-e', script]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as CallerAnswer;
}

/**
 * What a local process in the session sees: payments called by its cluster name, and `payments`
 * resolved (both through the agent). Prints one JSON line.
 */
const egressProbeScript = `
const dns = await import('node:dns/promises');
const { address } = await dns.lookup('payments');
const r = await fetch('http://payments:8080/pay');
console.log(JSON.stringify({ address, status: r.status, payments: await r.json() }));
`;

/** `detour exec --egress-only -n staging <flags> -- node -e <script> <args>`, to completion. */
function egressOnlyRun(flags: string[], script = egressProbeScript, args: string[] = []) {
  return runDetour(
    [
      'exec',
      '--egress-only',
      '-n',
      sampleNamespace,
      '--json',
      ...flags,
      '--',
      process.execPath,
      '--input-type=module',
      '-e',
      script,
      ...args,
    ],
    { env },
  );
}

/** The same with the egress probe script: what payments answered the process, and the CLI's stderr. */
async function egressOnlyExec(flags: string[]) {
  const result = await egressOnlyRun(flags);
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  const seen = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as {
    payments: CallerAnswer['body'];
  };
  return { payments: seen.payments, stderr: result.stderr };
}

async function exitOf(cli: ManagedProcess, what: string) {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      cli.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`detour did not exit (${what}):\n${cli.tail(40)}`)),
          60_000,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts `detour exec <flags> -- <local orders app>` and resolves once `servedLocally` holds. */
async function execLocalOrders(
  flags: string[],
  servedLocally: () => Promise<boolean>,
  cwd?: string,
): Promise<ManagedProcess> {
  const local = await freePort();
  const app = localOrders(local);
  const args = cwd
    ? ['exec', '--port', `8080:${local}`, '--', ...app]
    : [
        'exec',
        '--target',
        'deploy/orders',
        '-n',
        sampleNamespace,
        '--port',
        `8080:${local}`,
        '--json',
        ...flags,
        '--',
        ...app,
      ];
  return whenServing(startDetour(args, env, cwd), 'the session to serve the request locally', servedLocally);
}

async function endSession(cli: ManagedProcess, before: Record<string, unknown>): Promise<void> {
  interrupt(cli);
  await exitOf(cli, 'after Ctrl-C');
  assert.deepEqual(await routingObjects(), before, 'every VirtualService and DestinationRule is as before');
  assert.deepEqual(await detourLeases(), [], 'the session Lease is gone');
}

describe('issue 9: egress-only, filters, detour.yaml, --env-secrets (developer identity)', () => {
  let before_: Record<string, unknown>;
  const running: ManagedProcess[] = [];

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    before_ = await untouchedRoutingObjects();
  });

  after(async () => {
    for (const cli of running) await cli.stop(10_000);
  });

  it('egress-only with --target, from an IDE: Lease, env, DNS and calls through the agent; nothing routed', async () => {
    const versions = await routingVersions();
    const up = startDetour(
      [
        'up',
        '--egress-only',
        '--target',
        'deploy/orders',
        '-n',
        sampleNamespace,
        '--session',
        'modes-eo',
        '--carry-header',
        'x-dev=modes-eo',
        '--json',
      ],
      env,
    );
    running.push(up);
    const ready = (await up.waitForLine(
      'stderr',
      (json) => json.event === 'session.ready',
      'the egress-only session to be ready',
      60_000,
    )) as { mode?: string };
    assert.equal(ready.mode, 'egress-only', up.tail());
    assert.doesNotMatch(up.stderr, /"event":"route\./, 'no route is written or probed');

    // `detour status` lists it: egress-only, holder, age; --json shows the mode.
    const status = await runDetour(['status', '-n', sampleNamespace, '--json'], { env });
    assert.equal(status.code, 0, status.stderr);
    const listed = (JSON.parse(status.stdout) as Array<Record<string, unknown>>).find(
      (s) => s.sessionId === 'modes-eo',
    );
    assert.ok(listed, status.stdout);
    assert.equal(listed.mode, 'egress-only');
    assert.equal(listed.workload, 'Deployment/orders');
    assert.match(String(listed.holder), /^[^@\s]+@[^@\s]+$/);
    assert.equal(typeof listed.ageSeconds, 'number');
    assert.equal(listed.alive, true);
    assert.equal(listed.host, undefined, 'it takes no Service’s requests');
    const text = await runDetour(['status', '-n', sampleNamespace], { env });
    assert.match(
      text.stdout,
      /^modes-eo\tegress-only \(takes no requests\)\tDeployment\/orders\t\S+@\S+\tsince \S+ \([0-9smhd]+\)\talive$/m,
    );

    // The IDE's process: only the env `detour env` prints (target env + layer + proxy + carried header).
    const printed = await runDetour(['env', '--session', 'modes-eo', '--format', 'json'], { env });
    const sessionEnv = JSON.parse(printed.stdout) as Record<string, string>;
    assert.equal(sessionEnv.VERSION, 'v1', 'the target’s env');
    assert.match(sessionEnv.POD_NAME ?? '', /^orders-/, 'fieldRefs from a running pod of the target');
    assert.equal(sessionEnv.DETOUR_DEFAULT_HEADERS, '{"x-dev":"modes-eo"}');
    const ide = await run([process.execPath, '--input-type=module', '-e', egressProbeScript], {
      env: { PATH: process.env.PATH ?? '', HOME: homedir(), ...sessionEnv },
      what: 'the IDE-launched process',
    });
    assert.equal(ide.code, 0, ide.stderr);
    const seen = JSON.parse(ide.stdout) as {
      address: string;
      status: number;
      payments: CallerAnswer['body'];
    };
    assert.match(seen.address, /^198\.19\./, 'payments resolved by the cluster’s DNS (a Service address)');
    assert.equal(seen.status, 200);
    assert.equal(seen.payments.from, spiffe('detour-agent'), 'the call left from the agent pod, in the mesh');
    assert.equal(seen.payments.headers?.['x-dev'], 'modes-eo', '--carry-header rides on the call');

    // No request is taken: orders is answered by its pods, whatever the request carries.
    const answer = await callerGet('http://frontend:8080/', { 'x-dev': 'modes-eo' });
    assert.match(String(answer.body.called?.[0]?.body?.pod), /^orders-/, JSON.stringify(answer));
    assert.deepEqual(await routingVersions(), versions, 'no VirtualService or DestinationRule changed');

    interrupt(up);
    await exitOf(up, 'detour up after Ctrl-C');
    assert.deepEqual(await routingVersions(), versions);
    assert.deepEqual(await detourLeases(), [], 'the Lease is gone');
  });

  it('egress-only without --target: the namespace’s agent, no target env', async () => {
    const versions = await routingVersions();
    const seen = await egressOnlyExec(['--session', 'modes-ns']);
    assert.equal(seen.payments.from, spiffe('detour-agent'));
    assert.doesNotMatch(seen.stderr, /"event":"target\.resolved"/);
    assert.match(seen.stderr, /"event":"lease\.created"/);
    assert.deepEqual(await routingVersions(), versions);
    assert.deepEqual(await detourLeases(), []);
  });

  it('egress-only into a feature environment: --carry-header x-dev=NAME reaches its payments-v2', async () => {
    const feature = ['feature', 'up', 'modes-fe', '-n', sampleNamespace, '--header', 'x-dev=modes-fe'];
    const upResult = await runDetour([...feature, '--workload', 'payments=deploy/payments-v2', '--json'], {
      env,
    });
    assert.equal(upResult.code, 0, upResult.stderr);
    try {
      const call = async (flags: string[]) => (await egressOnlyExec(flags)).payments;
      const carried = await call(['--carry-header', 'x-dev=modes-fe']);
      assert.equal(carried.version, 'v2', `the environment's payments answered: ${JSON.stringify(carried)}`);
      assert.equal(carried.from, spiffe('detour-agent'));
      assert.equal((await call([])).version, 'v1', 'without the header: the shared payments');
    } finally {
      const down = await runDetour(['feature', 'down', 'modes-fe', '-n', sampleNamespace], { env });
      assert.equal(down.code, 0, down.stderr);
    }
  });

  it('--path ^=/modes/ with a header: only those paths reach the local app, through the mesh', async () => {
    const cli = await execLocalOrders(
      ['--header', 'x-dev=modes-p', '--path', '^=/modes/', '--session', 'modes-path'],
      async () =>
        (await callerGet('http://orders:8080/modes/x', { 'x-dev': 'modes-p' })).body.pod === 'laptop',
    );
    running.push(cli);
    assert.match(cli.stderr, /"event":"route\.live"/, 'the probe took the path');
    assert.equal(
      (await callerGet('http://orders:8080/modes/a?b=1', { 'x-dev': 'modes-p' })).body.pod,
      'laptop',
    );
    assert.equal((await callerGet('http://orders:8080/order', { 'x-dev': 'modes-p' })).body.version, 'v1');
    assert.equal((await callerGet('http://orders:8080/modes/x')).body.version, 'v1');
    await endSession(cli, before_);
  });

  it('--method GET with a header: a POST with the header reaches the pods', async () => {
    const cli = await execLocalOrders(
      ['--header', 'x-dev=modes-m', '--method', 'GET', '--session', 'modes-method'],
      async () => (await callerGet('http://orders:8080/order', { 'x-dev': 'modes-m' })).body.pod === 'laptop',
    );
    running.push(cli);
    assert.match(cli.stderr, /"event":"route\.live"/, 'the probe used GET');
    const post = await callerRequest('POST', 'http://orders:8080/order', { 'x-dev': 'modes-m' });
    assert.equal(post.body.version, 'v1', JSON.stringify(post));
    const put = await callerRequest('PUT', 'http://orders:8080/order', { 'x-dev': 'modes-m' });
    assert.equal(put.body.version, 'v1');
    await endSession(cli, before_);
  });

  it('--baggage env=modes-b: the member anywhere in the caller’s baggage, propagated by frontend', async () => {
    const viaFrontend = async (baggage: string | undefined) => {
      const answer = await callerGet('http://frontend:8080/', baggage === undefined ? {} : { baggage });
      return answer.body.called?.[0]?.body;
    };
    const cli = await execLocalOrders(
      ['--baggage', 'env=modes-b', '--session', 'modes-bag'],
      async () => (await viaFrontend('userId=alice, env=modes-b;ttl=30'))?.pod === 'laptop',
    );
    running.push(cli);
    assert.match(cli.stderr, /"event":"route\.live"/, 'the probe carried baggage: env=modes-b');
    const vs = await getVirtualService('orders');
    const route = vs.spec.http.find((r) => String(r.name) === 'detour-modes-bag');
    assert.match(JSON.stringify(route), /"baggage":\{"regex":/, 'an Istio regex on the baggage header');
    assert.equal((await viaFrontend('env=modes-b'))?.pod, 'laptop');
    for (const other of ['env=modes-bb', 'xenv=modes-b', 'userId=alice;env=modes-b', undefined]) {
      assert.equal((await viaFrontend(other))?.version, 'v1', String(other));
    }
    const status = await runDetour(['status', '-n', sampleNamespace], { env });
    assert.match(status.stdout, /modes-bag\tsteal baggage\[env=modes-b\]\t/);
    await endSession(cli, before_);
  });

  it('detour.yaml in the working directory configures the session', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'detour-modes-yaml-'));
    writeFileSync(
      join(dir, 'detour.yaml'),
      [
        '# yaml-language-server: $schema=detour.schema.json',
        'target: deploy/orders',
        `namespace: ${sampleNamespace}`,
        'header:',
        '  - x-dev=modes-y',
        'session: modes-yaml',
        'json: true',
        '',
      ].join('\n'),
    );
    const cli = await execLocalOrders(
      [],
      async () =>
        (await callerGet('http://frontend:8080/', { 'x-dev': 'modes-y' })).body.called?.[0]?.body?.pod ===
        'laptop',
      dir,
    );
    running.push(cli);
    assert.match(cli.stderr, /"event":"lease\.created".*detour-modes-yaml/);
    await endSession(cli, before_);
  });

  it('--env-secrets: refused without the optional role (naming it), copied with it, never printed', async () => {
    const value = `s3cr3t-${randomBytes(6).toString('hex')}`;
    const session = 'modes-sec';
    const root = join(homedir(), '.cache', 'detour', 'sessions', session, 'root');
    const secretApp = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'modes-secrets', namespace: sampleNamespace },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: 'modes-secrets' } },
        template: {
          metadata: { labels: { app: 'modes-secrets' } },
          spec: {
            containers: [
              {
                name: 'app',
                image: sampleImage,
                env: [
                  { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'modes-db', key: 'password' } } },
                ],
                envFrom: [{ prefix: 'DB_', secretRef: { name: 'modes-db' } }],
                volumeMounts: [{ name: 'db', mountPath: '/etc/modes' }],
              },
            ],
            volumes: [{ name: 'db', secret: { secretName: 'modes-db' } }],
          },
        },
      },
    };
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'modes-db', namespace: sampleNamespace },
      stringData: { password: value, user: 'orders' },
    };
    await kubectlOk(['apply', '-f', join(repoRoot, 'manifests', 'rbac', 'detour-developer-secrets.yaml')]);
    await kubectlOk(
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [secret, secretApp] }),
    );
    const show = `console.log(JSON.stringify({ password: process.env.DB_PASSWORD ?? null, user: process.env.DB_user ?? null, file: await import('node:fs').then((fs) => fs.existsSync(process.argv[1]) ? fs.readFileSync(process.argv[1], 'utf8') : null) }))`;
    const exec = (flags: string[]) =>
      egressOnlyRun(['--target', 'deploy/modes-secrets', '--session', session, ...flags], show, [
        join(root, 'etc', 'modes', 'password'),
      ]);
    try {
      const versions = await routingVersions();
      const refused = await exec(['--env-secrets']);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /DETOUR_PERMISSION_DENIED/);
      assert.match(refused.stderr, /--env-secrets needs \\"get secrets\\" in namespace staging/);
      assert.match(refused.stderr, /detour-developer-secrets/);
      assert.deepEqual(await detourLeases(), [], 'refused before anything was created');
      assert.deepEqual(await routingVersions(), versions);

      const without = await exec([]);
      assert.equal(without.code, 0, without.stderr);
      assert.deepEqual(JSON.parse(without.stdout.trim().split('\n').at(-1) ?? '{}'), {
        password: null,
        user: null,
        file: null,
      });
      assert.match(without.stderr, /DB_PASSWORD: from Secret modes-db; pass --env-secrets/);

      await kubectlOk([
        '-n',
        sampleNamespace,
        'create',
        'rolebinding',
        'modes-secrets-detour-dev',
        '--clusterrole=detour-developer-secrets',
        '--user=detour-dev',
      ]);
      const granted = await waitFor(
        'the RoleBinding to take effect',
        async () => {
          const result = await exec(['--env-secrets']);
          return result.code === 0 ? result : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 1000 },
      );
      assert.deepEqual(JSON.parse(granted.stdout.trim().split('\n').at(-1) ?? '{}'), {
        password: value,
        user: 'orders',
        file: value,
      });
      assert.ok(!granted.stderr.includes(value), 'the value never reaches the CLI’s output (--json)');
      assert.match(granted.stderr, /"event":"env\.copied".*variable\(s\) from Secrets/);
      assert.equal(existsSync(root), false, 'the copied Secret files went with the session');
    } finally {
      await kubectlOk([
        '-n',
        sampleNamespace,
        'delete',
        'rolebinding',
        'modes-secrets-detour-dev',
        '--ignore-not-found',
      ]);
      await kubectlOk([
        '-n',
        sampleNamespace,
        'delete',
        'deployment/modes-secrets',
        'secret/modes-db',
        '--ignore-not-found',
      ]);
    }
  });

  it('bad input: a clear error and the cluster untouched', async () => {
    const versions = await routingVersions();
    const invalid = mkdtempSync(join(tmpdir(), 'detour-modes-bad-'));
    writeFileSync(join(invalid, 'detour.yaml'), 'target: deploy/orders\nheaders: [x-dev=me]\n');
    const cases: Array<{ args: string[]; cwd?: string; code: string; message: RegExp }> = [
      {
        args: ['--egress-only', '--header', 'x-dev=me', '--target', 'deploy/orders', '-n', sampleNamespace],
        code: 'DETOUR_CONFLICTING_FLAGS',
        message: /--egress-only takes no requests, so it cannot be combined with --header/,
      },
      {
        args: ['--target', 'deploy/orders', '-n', sampleNamespace],
        code: 'DETOUR_NO_FILTER',
        message: /--header x-dev=.*--steal-all.*--egress-only/,
      },
      {
        args: ['--config', join(invalid, 'missing.yaml'), '--egress-only', '-n', sampleNamespace],
        code: 'DETOUR_BAD_CONFIG',
        message: /cannot read the config file .*missing\.yaml \(ENOENT\)/,
      },
      {
        args: ['-n', sampleNamespace],
        cwd: invalid,
        code: 'DETOUR_BAD_CONFIG',
        message: /detour\.yaml: unknown key \\"headers\\"; did you mean \\"header\\"/,
      },
    ];
    for (const { args, cwd, code, message } of cases) {
      const result = await runDetour(['exec', '--json', ...args, '--', 'true'], {
        env,
        ...(cwd ? { cwd } : {}),
      });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(code));
      assert.match(result.stderr, message);
    }
    assert.deepEqual(await routingVersions(), versions);
    assert.deepEqual(await detourLeases(), []);
  });

  it('a namespace the cluster does not have (a typo in -n) is named, with the ones it has, by every command', async () => {
    const versions = await routingVersions();
    const typo = `${sampleNamespace.slice(0, -1)}`;
    const named = new RegExp(
      `namespace ${typo} does not exist in context \\S+ \\(it has [^)]*\\b${sampleNamespace}\\b[^)]*\\): check -n`,
    );
    for (const args of [
      ['exec', '--target', 'deploy/orders', '-n', typo, '--header', 'x-dev=me', '--', 'true'],
      ['exec', '--egress-only', '-n', typo, '--', 'true'],
      ['status', '-n', typo],
      ['clean', '-n', typo],
      [
        'feature',
        'up',
        'typo',
        '-n',
        typo,
        '--header',
        'x-dev=typo',
        '--workload',
        'payments=deploy/payments-v2',
      ],
    ]) {
      // --json before -- (after it, it would be the wrapped command's).
      const n = args.indexOf('-n');
      const result = await runDetour([...args.slice(0, n), '--json', ...args.slice(n)], { env });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      const failure = JSON.parse(result.stderr.trim().split('\n').at(-1) ?? '{}') as Record<string, string>;
      assert.equal(failure.code, 'DETOUR_NO_NAMESPACE', `${args.join(' ')}: ${result.stderr}`);
      assert.match(String(failure.message), named);
    }
    const doctor = await runDetour(['doctor', '-n', typo], { env });
    assert.equal(doctor.code, 1, doctor.stdout);
    assert.match(doctor.stdout, new RegExp(`FAIL  mesh: ${named.source}`));
    assert.match(doctor.stdout, new RegExp(`skip  agent: skipped: no namespace ${typo}`));
    assert.deepEqual(await routingVersions(), versions);
    assert.deepEqual(await detourLeases(), []);
  });
});
