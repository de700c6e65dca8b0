// Issue 10 on the local cluster with Istio: the IDE way. `detour up --egress-only -n staging` holds a
// session; a plain `java` started with ONLY the output of `detour env` (plus PATH and HOME), as an
// IntelliJ run configuration starts it, reaches payments by its cluster name with every JVM client
// (the JDK's, Reactor Netty on NIO and epoll, Apache HttpClient 5, OkHttp), routed by the native
// layer (LD_PRELOAD) alone, and payments' sidecar sees the agent's mesh identity.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileJava, compileJvmClients, type Java } from '../runtimes/toolchains.ts';
import { buildNativeLayer } from '../support/native-layer.ts';
import { type ManagedProcess, run } from '../support/processes.ts';
import { detourCommand, interrupt, sampleNamespace, spiffe, startDetour, useSample } from './support.ts';

const paymentsUrl = (path: string) => `http://payments.${sampleNamespace}.svc.cluster.local:8080${path}`;

describe('a JVM launched with only `detour env` reaches payments through the agent (native layer)', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'detour-e2e-native-'));
  const stateDir = join(scratch, 'state');
  let java: Java;
  let clients: string;
  let up: ManagedProcess | undefined;
  let exported: Record<string, string>;

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    await buildNativeLayer();
    java = await compileJava(scratch);
    clients = await compileJvmClients(scratch);
    up = startDetour(['up', '--egress-only', '-n', sampleNamespace, '--session', 'e2e-native', '--json'], {
      DETOUR_STATE_DIR: stateDir,
    });
    await up.waitForLine(
      'stderr',
      (line) => line.event === 'session.env',
      'session e2e-native published',
      90_000,
    );
    const printed = await run([...detourCommand(), 'env', '--session', 'e2e-native', '--format', 'json'], {
      env: { ...process.env, DETOUR_STATE_DIR: stateDir },
      what: 'detour env --format json',
    });
    assert.equal(printed.code, 0, printed.stderr);
    exported = JSON.parse(printed.stdout) as Record<string, string>;
  });

  after(async () => {
    if (up) {
      interrupt(up);
      await up.stop(10_000);
    }
    rmSync(scratch, { recursive: true, force: true });
  });

  const launch = (argv: string[]) =>
    run(argv, {
      env: { ...exported, PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' },
      cwd: scratch,
      timeoutMs: 60_000,
      what: argv.slice(-2).join(' '),
    });

  it('the env preloads the native layer and sets no JAVA_TOOL_OPTIONS', () => {
    assert.match(exported.LD_PRELOAD ?? '', /\/libdetour\.so$/);
    assert.equal(exported.JAVA_TOOL_OPTIONS, undefined);
  });

  const clientsProbe = ['reactor-netty-nio', 'reactor-netty-epoll', 'httpclient5', 'okhttp'];
  for (const mode of ['socket', 'nio', 'urlconnection', 'httpclient', ...clientsProbe]) {
    it(`${mode}: payments answers, and sees the agent's mesh identity`, async () => {
      const argv = clientsProbe.includes(mode)
        ? [java.java, '-cp', clients, 'ClientsProbe', mode, paymentsUrl(`/native/${mode}`)]
        : [java.java, '-cp', java.classes, 'Probe', mode, paymentsUrl(`/native/${mode}`)];
      const result = await launch(argv);
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      const body = JSON.parse(result.stdout) as { service: string; from: string };
      assert.equal(body.service, 'payments', result.stdout);
      assert.equal(body.from, spiffe('detour-agent'), 'the call left from the agent pod (its sidecar)');
    });
  }
});
