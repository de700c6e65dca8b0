/**
 * Issue 5 item 5: `detour up` keeps a session open without wrapping a command, and `detour env`
 * prints what an IDE launch needs. A plain `node` and a plain `java` process started with ONLY that
 * env (plus PATH and HOME), as an IDE run configuration starts them, behave as under `detour exec`:
 * they reach payments (which only the agent's pod resolves and reaches) by its cluster name, the
 * Node one through the layer, carrying x-dev from DETOUR_DEFAULT_HEADERS.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '../support/detour.ts';
import { buildNativeLayer } from '../support/native-layer.ts';
import { addresses } from '../support/netns.ts';
import type { ManagedProcess } from '../support/processes.ts';
import { paymentsName, paymentsUrl, ports, type RuntimeRig, useRuntimeRig } from './runtime-rig.ts';
import { compileJava, compileJvmClients, type Java, programsDir, scratchDir } from './toolchains.ts';

const defaultHeaders = JSON.stringify({ 'x-dev': 'dev-a' });
/** The `detour up` session holds x-dev=dev-a on the port; the `detour exec` runs compared with it take another. */
const execHeader = 'x-dev=dev-a-exec';

function parseDotenv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (!line) continue;
    const at = line.indexOf('=');
    const value = line.slice(at + 1);
    env[line.slice(0, at)] = value.startsWith('"') ? (JSON.parse(value) as string) : value;
  }
  return env;
}

function parseIntellij(text: string): Record<string, string> {
  const xmlText = (value: string) =>
    value.replaceAll('&quot;', '"').replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');
  return Object.fromEntries(
    [...text.matchAll(/<env name="([^"]*)" value="([^"]*)" \/>/g)].map((m) => [
      xmlText(m[1] ?? ''),
      xmlText(m[2] ?? ''),
    ]),
  );
}

/** What a Node probe run shows, without the per-run parts (ports, header order). */
interface NodeOutcome {
  layer: boolean;
  lookup: { address: string; family: number };
  http: { status: number; app: string; path: string; xDev: string | undefined };
  fetch: { status: number; app: string; path: string; xDev: string | undefined };
}

function nodeOutcome(stdout: string, stderr: string): NodeOutcome {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  let raw: {
    layer: boolean;
    lookup: { address: string; family: number };
    http: { status: number; body: { app: string; path: string; headers: Record<string, string> } };
    fetch: { status: number; body: { app: string; path: string; headers: Record<string, string> } };
  };
  try {
    raw = JSON.parse(line);
  } catch {
    throw new Error(`node-probe printed no JSON:\n${stdout}\n${stderr}`);
  }
  const call = (answer: typeof raw.http) => ({
    status: answer.status,
    app: answer.body.app,
    path: answer.body.path,
    xDev: answer.body.headers['x-dev'],
  });
  return { layer: raw.layer, lookup: raw.lookup, http: call(raw.http), fetch: call(raw.fetch) };
}

describe('IDE launch: `detour up` + `detour env`, a plain node and java with only that env', {
  timeout: 240_000,
}, () => {
  const scratch = scratchDir('ide');
  const stateDir = join(scratch.path, 'state');
  let java: Java;
  let clients: string;
  let rt: RuntimeRig;
  let up: ManagedProcess;
  let proxyPort: number;
  const formats: Record<string, Record<string, string>> = {};

  /** `detour env --format F`, run in the laptop namespace as an IDE's launch step would. */
  const detourEnv = async (format: string) => {
    const result = await rt.inLaptop(rt.rig.cli(['env', '--format', format]), {
      ...process.env,
      DETOUR_STATE_DIR: stateDir,
    });
    assert.equal(result.code, 0, `detour env --format ${format}: ${result.stderr}`);
    return result.stdout;
  };

  /** Only the exported env, plus PATH and HOME (and the default header, when asked). */
  const onlyExported = (exported: Record<string, string>, extra: Record<string, string> = {}) => ({
    ...exported,
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    ...extra,
  });

  useRuntimeRig('rti', {
    prepare: async () => {
      await buildNativeLayer();
      java = await compileJava(scratch.path);
      clients = await compileJvmClients(scratch.path);
    },
    started: async (started) => {
      rt = started;
      up = rt.rig.start(
        'laptop',
        'detour up',
        rt.rig.cli(
          rt.rig.sessionArgs({ name: 'ide-a', headers: ['x-dev=dev-a'], port: String(ports.inbound) }),
        ),
        { ...process.env, DETOUR_STATE_DIR: stateDir },
      );
      // The CLI reports progress as JSON lines on stderr (--json); stdout is for data.
      const ready = (await up.waitForLine(
        'stderr',
        (line) => line.event === 'session.ready',
        'session ide-a ready',
      )) as { proxy?: { port: number } };
      proxyPort = ready.proxy?.port ?? 0;
      await up.waitForLine('stderr', (line) => line.event === 'session.env', 'session ide-a published');
      formats.json = JSON.parse(await detourEnv('json')) as Record<string, string>;
      formats.dotenv = parseDotenv(await detourEnv('dotenv'));
      formats.vscode = (JSON.parse(await detourEnv('vscode')) as { env: Record<string, string> }).env;
      formats.intellij = parseIntellij(await detourEnv('intellij'));
    },
    cleanup: () => scratch.remove(),
  });

  test('detour env: json, dotenv, vscode and intellij carry the same env, pointing at the running session', () => {
    const env = formats.json ?? {};
    assert.equal(env.DETOUR_PROXY, `127.0.0.1:${proxyPort}`);
    for (const key of ['NODE_OPTIONS', 'LD_PRELOAD', 'HTTP_PROXY', 'ALL_PROXY', 'NO_PROXY', 'http_proxy'])
      assert.ok(env[key], `detour env has no ${key}: ${JSON.stringify(env)}`);
    // The native layer routes the JVM: no proxy properties for a debugger's launch.
    assert.match(env.LD_PRELOAD ?? '', /\/libdetour\.so$/);
    assert.equal(env.JAVA_TOOL_OPTIONS, undefined);
    for (const format of ['dotenv', 'vscode', 'intellij'])
      assert.deepEqual(formats[format], env, `--format ${format} differs from --format json`);
  });

  test('ide: plain node with only the `detour env --format json` env behaves as under `detour exec`', async () => {
    const probe = [process.execPath, join(programsDir, 'node-probe.mjs'), paymentsUrl('/ide/node')];
    // Started outside the workspace, as an app of the developer's own would be.
    const launched = await rt.inLaptop(
      probe,
      onlyExported(formats.json ?? {}, { DETOUR_DEFAULT_HEADERS: defaultHeaders }),
      { cwd: scratch.path },
    );
    assert.equal(launched.code, 0, `${launched.stdout}\n${launched.stderr}`);
    const asLaunched = nodeOutcome(launched.stdout, launched.stderr);
    assert.deepEqual(asLaunched, {
      layer: true,
      lookup: { address: addresses.cluster, family: 4 },
      http: { status: 200, app: 'payments', path: '/ide/node/http', xDev: 'dev-a' },
      fetch: { status: 200, app: 'payments', path: '/ide/node/fetch', xDev: 'dev-a' },
    });
    const underExec = await rt.exec(probe, {
      env: { ...process.env, DETOUR_DEFAULT_HEADERS: defaultHeaders },
      header: execHeader,
    });
    assert.equal(underExec.code, 0, `${underExec.stdout}\n${underExec.stderr}`);
    assert.deepEqual(nodeOutcome(underExec.stdout, underExec.stderr), asLaunched);
  });

  test('ide: plain java with only the `detour env --format dotenv` env behaves as under `detour exec`', async () => {
    for (const mode of ['socket', 'nio', 'urlconnection', 'httpclient']) {
      const probe = [java.java, '-cp', java.classes, 'Probe', mode, paymentsUrl(`/ide/java/${mode}`)];
      const launched = await rt.inLaptop(probe, onlyExported(formats.dotenv ?? {}), { cwd: scratch.path });
      assert.equal(launched.code, 0, `${mode}: ${launched.stdout}\n${launched.stderr}`);
      const underExec = await rt.exec(probe, { header: execHeader });
      assert.equal(underExec.code, 0, `${mode} under exec: ${underExec.stdout}\n${underExec.stderr}`);
      const answer = (stdout: string) => {
        const body = JSON.parse(stdout) as { app: string; path: string; headers: Record<string, string> };
        return { app: body.app, path: body.path, host: body.headers.host };
      };
      assert.deepEqual(answer(launched.stdout), {
        app: 'payments',
        path: `/ide/java/${mode}`,
        host: `${paymentsName}:${ports.payments}`,
      });
      assert.deepEqual(answer(underExec.stdout), answer(launched.stdout), mode);
    }
  });

  test('ide: Reactor Netty (Spring WebClient) with only the `detour env --format intellij` env', async () => {
    const probe = [
      java.java,
      '-cp',
      clients,
      'ClientsProbe',
      'reactor-netty-nio',
      paymentsUrl('/ide/reactor'),
    ];
    const launched = await rt.inLaptop(probe, onlyExported(formats.intellij ?? {}), { cwd: scratch.path });
    assert.equal(launched.code, 0, `${launched.stdout}\n${launched.stderr}`);
    const body = JSON.parse(launched.stdout) as { app: string; path: string };
    assert.deepEqual({ app: body.app, path: body.path }, { app: 'payments', path: '/ide/reactor' });
  });

  test("ide: the README's IntelliJ script writes a well-formed run configuration with the session env", async () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### IntelliJ IDEA'));
    const script = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(script, 'README.md has no sh block under "### IntelliJ IDEA"');
    // `detour` on PATH, as installed.
    const bin = join(scratch.path, 'bin');
    const project = join(scratch.path, 'project');
    mkdirSync(bin, { recursive: true });
    mkdirSync(project, { recursive: true });
    writeFileSync(join(bin, 'detour'), `#!/bin/sh\nexec ${rt.rig.cli([]).join(' ')} "$@"\n`);
    chmodSync(join(bin, 'detour'), 0o755);
    const written = await rt.inLaptop(
      ['bash', '-euo', 'pipefail', '-c', script],
      { ...process.env, DETOUR_STATE_DIR: stateDir, PATH: `${bin}:${process.env.PATH}` },
      { cwd: project },
    );
    assert.equal(written.code, 0, written.stderr);
    // Parsed by a real XML parser: the run configuration's <envs> are the session's env.
    const parsed = await rt.inLaptop([
      'python3',
      '-c',
      'import json, sys, xml.etree.ElementTree as T; r = T.parse(sys.argv[1]).getroot(); ' +
        'c = r.find("configuration"); ' +
        'print(json.dumps({"type": c.get("type"), "envs": {e.get("name"): e.get("value") for e in c.iter("env")}}))',
      join(project, '.run', 'orders-detour.run.xml'),
    ]);
    assert.equal(parsed.code, 0, parsed.stderr);
    const configuration = JSON.parse(parsed.stdout) as { type: string; envs: Record<string, string> };
    assert.equal(configuration.type, 'Application');
    assert.deepEqual(configuration.envs, formats.json);
  });

  test('ide: the session stays up between launches and `detour env` fails clearly once it ended', async () => {
    assert.equal(up.status, undefined, 'detour up exited while IDE launches used it');
    await up.stop();
    const result = await rt.inLaptop(rt.rig.cli(['env', '--format', 'json']), {
      ...process.env,
      DETOUR_STATE_DIR: stateDir,
    });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /DETOUR_NO_SESSION|no detour session is running/);
  });
});
