import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { nativeLibraryPath } from '@detour/layer';
import { formatEnv } from '../src/session/env-formats.ts';

const run = promisify(execFile);
const cli = join(import.meta.dirname, '..', 'src', 'main.ts');
const agentMain = join(import.meta.dirname, '..', '..', 'agent', 'src', 'main.ts');

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

describe('detour up and detour env', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'detour-state-'));
  const env = { ...process.env, DETOUR_STATE_DIR: stateDir };
  let agent: ChildProcess;
  let up: ChildProcess;
  let upStderr = '';
  let proxyPort = 0;
  let tunnelPort = '';
  let adminPort = '';

  before(async () => {
    agent = spawn(process.execPath, [agentMain], {
      env: {
        ...env,
        DETOUR_TUNNEL_LISTEN: '127.0.0.1:0',
        DETOUR_INBOUND_LISTEN: '127.0.0.1:0',
        DETOUR_ADMIN_LISTEN: '127.0.0.1:0',
        DETOUR_TOKENS: 'tok',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let agentLog = '';
    agent.stderr?.on('data', (chunk: Buffer) => {
      agentLog += chunk;
    });
    tunnelPort = await waitFor(
      'the agent to start',
      () => /"tunnel":"127\.0\.0\.1:(\d+)"/.exec(agentLog)?.[1],
    );
    adminPort = /"admin":"127\.0\.0\.1:(\d+)"/.exec(agentLog)?.[1] ?? '';
    assert.notEqual(tunnelPort, '0', 'the agent reports the port it bound');
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    proxyPort = (probe.address() as AddressInfo).port;
    probe.close();
    up = spawn(
      process.execPath,
      [
        cli,
        'up',
        '--agent',
        `127.0.0.1:${tunnelPort}`,
        '--token',
        'tok',
        '--header',
        'x-dev=dev-a',
        '--port',
        '8080',
        '--session',
        'ide-1',
        '--proxy-port',
        String(proxyPort),
        '--carry-header',
        'x-dev',
      ],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    up.stderr?.on('data', (chunk: Buffer) => {
      upStderr += chunk;
    });
    await waitFor('detour up to publish its session', () =>
      readdirSync(stateDir).includes('ide-1.json') ? true : undefined,
    );
  });

  after(async () => {
    for (const child of [up, agent]) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  it('prints the session environment as JSON', async () => {
    const { stdout } = await run(process.execPath, [cli, 'env', '--format', 'json'], { env });
    const printed = JSON.parse(stdout) as Record<string, string>;
    assert.equal(
      printed.DETOUR_PROXY,
      `127.0.0.1:${proxyPort}`,
      'the proxy port asked for, stable across restarts',
    );
    assert.equal(
      printed.DETOUR_DEFAULT_HEADERS,
      '{"x-dev":"dev-a"}',
      '--carry-header exports the session header',
    );
    assert.equal(printed.ALL_PROXY, `socks5h://${printed.DETOUR_PROXY}`);
    assert.match(printed.NODE_OPTIONS ?? '', /--require "\S+register\.ts"/);
    // The native layer routes the JVM (and every other dynamically linked program): no proxy properties.
    assert.equal(printed.LD_PRELOAD, nativeLibraryPath());
    assert.equal(printed.JAVA_TOOL_OPTIONS, undefined);
    assert.equal(printed.DETOUR_ROUTING_HEADERS, 'x-dev,baggage');
    assert.match(upStderr, /session ide-1 is up/);
  });

  it('prints the same environment in every IDE format', async () => {
    const { stdout: json } = await run(process.execPath, [cli, 'env', '--format', 'json'], { env });
    const expected = JSON.parse(json) as Record<string, string>;
    for (const format of ['dotenv', 'intellij', 'vscode', 'shell']) {
      const { stdout } = await run(process.execPath, [cli, 'env', '--session', 'ide-1', '--format', format], {
        env,
      });
      assert.equal(stdout, formatEnv(expected, format));
    }
    assert.match(formatEnv({ A: 'x"<y' }, 'intellij'), /<env name="A" value="x&quot;&lt;y" \/>/);
  });

  it('names the running sessions when asked for another, and the formats when given a bad one', async () => {
    await assert.rejects(run(process.execPath, [cli, 'env', '--session', 'nope'], { env }), {
      stderr: /no running session nope; running: ide-1/,
    });
    await assert.rejects(run(process.execPath, [cli, 'env', '--format', 'toml'], { env }), {
      stderr: /--format "toml" is not one of dotenv, json, intellij, vscode, shell/,
    });
  });

  it('--egress-only: a session the agent holds but sends nothing to, carrying the header asked for', async () => {
    const egress = spawn(
      process.execPath,
      [
        cli,
        'up',
        '--egress-only',
        '--agent',
        `127.0.0.1:${tunnelPort}`,
        '--token',
        'tok',
        '--session',
        'eo-1',
        '--carry-header',
        'x-dev=feature-x',
        '--json',
      ],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    egress.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    try {
      await waitFor('the egress-only session to be ready', () =>
        stderr.includes('"event":"session.env"') ? true : undefined,
      );
      assert.match(stderr, /"event":"session.ready".*"mode":"egress-only"/);
      assert.match(stderr, /egress-only, takes no requests/);
      const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      assert.match(metrics, /^detour_sessions\{mode="egress-only"\} 1$/m, 'the agent registered it');
      assert.match(metrics, /^detour_sessions\{mode="steal"\} 1$/m, 'beside the steal session');
      const { stdout } = await run(process.execPath, [cli, 'env', '--session', 'eo-1', '--format', 'json'], {
        env,
      });
      const printed = JSON.parse(stdout) as Record<string, string>;
      assert.equal(printed.DETOUR_DEFAULT_HEADERS, '{"x-dev":"feature-x"}');
      assert.equal(printed.DETOUR_ROUTING_HEADERS, 'x-dev,baggage');
    } finally {
      egress.kill('SIGTERM');
      await once(egress, 'exit');
    }
    const after = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    assert.match(after, /^detour_sessions\{mode="egress-only"\} 0$/m, 'unregistered when it ended');
  });

  it('removes its session file when it ends', async () => {
    up.kill('SIGTERM');
    await once(up, 'exit');
    assert.deepEqual(readdirSync(stateDir), []);
    await assert.rejects(run(process.execPath, [cli, 'env'], { env }), {
      stderr: /no detour session is running/,
    });
  });
});
