/**
 * The world of one runtime test file: the three namespaces of tests/support/netns.ts, the agent in
 * the pod, the "payments" service in the cluster namespace (only the pod resolves and reaches it),
 * and `detour exec` sessions in the laptop running a real program of the runtime under test.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { paymentsName, ports, Rig } from '../support/detour.ts';
import { addresses } from '../support/netns.ts';
import { type RunResult, run } from '../support/processes.ts';
import { programsDir, requireTool, scratchDir } from './toolchains.ts';

export { paymentsName, ports } from '../support/detour.ts';

/** The HTTPS port of payments (tls-payments.mjs), beside the plain HTTP one. */
export const paymentsTlsPort = 9443;

export const paymentsUrl = (path: string, name = paymentsName) => `http://${name}:${ports.payments}${path}`;
export const paymentsTlsUrl = (path: string, name = paymentsName) =>
  `https://${name}:${paymentsTlsPort}${path}`;

/** payments' self-signed certificate (its own trust anchor) in the shapes clients take. */
export interface PaymentsTrust {
  /** PEM certificate: curl --cacert, SSL_CERT_FILE (Go, OpenSSL/Python), REQUESTS_CA_BUNDLE. */
  certPem: string;
  keyPem: string;
}

async function makeTrust(dir: string): Promise<PaymentsTrust> {
  const openssl = requireTool('openssl', 'apt-get install openssl');
  const certPem = join(dir, 'payments.pem');
  const keyPem = join(dir, 'payments-key.pem');
  const names = ['payments', paymentsName].map((name) => `DNS:${name}`).join(',');
  const made = await run(
    [
      openssl,
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=payments',
      '-addext',
      `subjectAltName=${names}`,
      '-keyout',
      keyPem,
      '-out',
      certPem,
    ],
    { timeoutMs: 30_000 },
  );
  if (made.code !== 0) throw new Error(`openssl req failed: ${made.stderr}`);
  return { certPem, keyPem };
}

/** What the payments app echoes back: which app answered, and the request it saw. */
export interface EchoAnswer {
  app: string;
  /** Present (true) when the HTTPS face of payments answered. */
  tls?: boolean;
  method: string;
  path: string;
  headers: Record<string, string>;
}

export class RuntimeRig {
  readonly rig: Rig;
  readonly trust: PaymentsTrust;
  readonly #scratch: { path: string; remove(): void };
  #sessions = 0;

  private constructor(rig: Rig, trust: PaymentsTrust, scratch: { path: string; remove(): void }) {
    this.rig = rig;
    this.trust = trust;
    this.#scratch = scratch;
  }

  /** payments on HTTP (ports.payments) and HTTPS (paymentsTlsPort) in the cluster; the agent in the pod. */
  static async start(tag: string): Promise<RuntimeRig> {
    const scratch = scratchDir(`${tag}-tls`);
    const rig = new Rig(tag);
    try {
      const trust = await makeTrust(scratch.path);
      await rig.startApp('cluster', 'payments', { port: ports.payments, host: addresses.cluster });
      const tls = rig.start('cluster', 'app payments-tls', [
        process.execPath,
        join(programsDir, 'tls-payments.mjs'),
        '--cert',
        trust.certPem,
        '--key',
        trust.keyPem,
        '--host',
        addresses.cluster,
        '--port',
        String(paymentsTlsPort),
      ]);
      await tls.waitForLine('stdout', (line) => line.event === 'app.listening', 'payments-tls listening');
      await rig.startAgent();
      return new RuntimeRig(rig, trust, scratch);
    } catch (error) {
      await rig.close();
      scratch.remove();
      throw error;
    }
  }

  /** JVM flags pointing javax.net.ssl at a PKCS12 trust store holding only payments' certificate. */
  async jvmTrustFlags(): Promise<string[]> {
    const keytool = requireTool('keytool', 'apt-get install openjdk-17-jdk-headless (any JDK 11 or later)');
    const store = join(this.#scratch.path, 'payments-trust.p12');
    const password = 'detour-test';
    const imported = await run(
      [
        keytool,
        '-importcert',
        '-noprompt',
        '-alias',
        'payments',
        '-file',
        this.trust.certPem,
        '-keystore',
        store,
        '-storetype',
        'PKCS12',
        '-storepass',
        password,
      ],
      { timeoutMs: 30_000, env: { ...process.env, JAVA_TOOL_OPTIONS: '' } },
    );
    if (imported.code !== 0)
      throw new Error(`keytool -importcert failed: ${imported.stdout}${imported.stderr}`);
    return [
      `-Djavax.net.ssl.trustStore=${store}`,
      '-Djavax.net.ssl.trustStoreType=PKCS12',
      `-Djavax.net.ssl.trustStorePassword=${password}`,
    ];
  }

  /**
   * Runs `detour exec --agent <pod>:7700 --token T --header x-dev=dev-a --port 8080 -- <command>` in
   * the laptop namespace (another header while a `detour up` holds dev-a). The CLI's progress goes to
   * stderr; stdout is the program's own.
   */
  exec(
    command: readonly string[],
    options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; header?: string } = {},
  ) {
    this.#sessions += 1;
    const argv = this.rig.cli(
      this.rig.sessionArgs({
        name: `rt-${this.#sessions}`,
        headers: [options.header ?? 'x-dev=dev-a'],
        port: String(ports.inbound),
        command: [...command],
        json: false,
      }),
    );
    return run(this.rig.topology.exec('laptop', argv), {
      timeoutMs: options.timeoutMs ?? 60_000,
      env: options.env ?? process.env,
      what: `detour exec -- ${command.join(' ')}`,
    });
  }

  /** Runs a command in the laptop namespace without detour. */
  inLaptop(
    command: readonly string[],
    env?: NodeJS.ProcessEnv,
    options: { timeoutMs?: number; cwd?: string } = {},
  ): Promise<RunResult> {
    return run(this.rig.topology.exec('laptop', command), {
      timeoutMs: options.timeoutMs ?? 30_000,
      env,
      cwd: options.cwd,
      what: command.join(' '),
    });
  }

  /** The premise of every runtime test: without detour the laptop can neither resolve nor reach payments. */
  async assertPaymentsOnlyThroughAgent(): Promise<void> {
    const lookup = await this.inLaptop(['getent', 'hosts', paymentsName]);
    assert.notEqual(lookup.code, 0, `the laptop resolved ${paymentsName}: ${lookup.stdout}`);
    const direct = await this.rig.curl(
      'laptop',
      ['-sS', `http://${addresses.cluster}:${ports.payments}/`],
      3_000,
    );
    assert.notEqual(direct.code, 0, 'the laptop reached the payments address directly');
    const inPod = await this.rig.curl('pod', ['-sS', paymentsUrl('/from-pod')]);
    assert.equal(inPod.code, 0, `the pod cannot reach payments: ${inPod.stderr}`);
    assert.equal(JSON.parse(inPod.stdout).app, 'payments');
  }

  async close(): Promise<void> {
    try {
      await this.rig.close();
    } finally {
      this.#scratch.remove();
    }
  }
}

/**
 * The frame of every runtime test file, registered in the enclosing `describe`: before its tests,
 * `prepare` (build or find the runtime's toolchain), then a RuntimeRig handed to `started`; after
 * them, the rig closed and `cleanup` run; and first of its tests, the premise
 * (RuntimeRig.assertPaymentsOnlyThroughAgent).
 */
export function useRuntimeRig(
  tag: string,
  hooks: {
    prepare?: () => unknown;
    started: (rt: RuntimeRig) => unknown;
    cleanup?: () => void;
  },
): void {
  let rt: RuntimeRig | undefined;
  before(async () => {
    await hooks.prepare?.();
    rt = await RuntimeRig.start(tag);
    await hooks.started(rt);
  });
  after(async () => {
    try {
      await rt?.close();
    } finally {
      hooks.cleanup?.();
    }
  });
  test('premise: the laptop namespace cannot resolve or reach payments directly', async () => {
    assert.ok(rt, 'the runtime rig did not start');
    await rt.assertPaymentsOnlyThroughAgent();
  });
}

/** The payments answers among the lines a program printed (one JSON object per answer). */
export function answers(stdout: string): EchoAnswer[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as EchoAnswer)
    .filter((answer) => answer.app !== undefined);
}

/** Asserts a run succeeded with exactly one answer, from payments, for `path`; returns it. */
export function assertReachedPayments(
  result: RunResult,
  path: string,
  options: { tls?: boolean } = {},
): EchoAnswer {
  const output = `exit ${result.code}\n--- stdout:\n${result.stdout}\n--- stderr:\n${result.stderr}`;
  assert.equal(result.code, 0, output);
  const found = answers(result.stdout);
  assert.equal(found.length, 1, output);
  const [answer] = found as [EchoAnswer];
  assert.equal(answer.app, 'payments', output);
  assert.equal(answer.path, path, output);
  assert.equal(
    answer.tls ?? false,
    options.tls ?? false,
    `expected the ${options.tls ? 'HTTPS' : 'HTTP'} face\n${output}`,
  );
  return answer;
}

/** Asserts a run failed (the program exited non-zero and printed no answer). */
export function assertFailed(result: RunResult, stderrPattern: RegExp): void {
  const output = `exit ${result.code}\n--- stdout:\n${result.stdout}\n--- stderr:\n${result.stderr}`;
  assert.notEqual(result.code, 0, output);
  assert.equal(answers(result.stdout).length, 0, output);
  assert.match(result.stderr, stderrPattern, output);
}
