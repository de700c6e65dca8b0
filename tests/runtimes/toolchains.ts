/**
 * Builds the runtime test programs with this machine's own toolchains (javac, go, python3), offline,
 * into a temporary directory. A missing tool fails the test with its name and how to install it:
 * a runtime row must never pass by being skipped.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../support/processes.ts';

export const programsDir = fileURLToPath(new URL('./programs/', import.meta.url));
/** Caches kept between runs (Go's build cache, a Python venv when one is needed). */
export const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'detour');

/** Absolute path of a tool on PATH, or an error naming it and the fix. */
export function requireTool(name: string, install: string): string {
  try {
    return execFileSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`the runtime tests need \`${name}\`, which is not on PATH. Fix: ${install}`);
  }
}

export function scratchDir(tag: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `detour-runtimes-${tag}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

async function mustRun(
  argv: string[],
  what: string,
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
) {
  const result = await run(argv, { timeoutMs: 300_000, what, ...options });
  if (result.code !== 0)
    throw new Error(`${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  return result;
}

export interface Java {
  java: string;
  /** Directory holding Probe.class. */
  classes: string;
}

/** Compiles programs/Probe.java with javac (JDK 11+ for java.net.http). */
export async function compileJava(into: string): Promise<Java> {
  const fix = 'apt-get install openjdk-17-jdk-headless (any JDK 11 or later)';
  const javac = requireTool('javac', fix);
  const java = requireTool('java', fix);
  const classes = join(into, 'java');
  mkdirSync(classes, { recursive: true });
  await mustRun([javac, '-d', classes, join(programsDir, 'Probe.java')], 'javac Probe.java', {
    env: { ...process.env, JAVA_TOOL_OPTIONS: '' },
  });
  return { java, classes };
}

/** Builds programs/go-probe (stdlib only) offline, with the build cache under ~/.cache/detour. */
export async function buildGo(into: string): Promise<string> {
  const go = requireTool('go', 'install Go 1.22 or later from https://go.dev/dl/ and put `go` on PATH');
  const binary = join(into, 'go-probe');
  await mustRun([go, 'build', '-o', binary, 'main.go'], 'go build go-probe', {
    cwd: join(programsDir, 'go-probe'),
    env: {
      ...process.env,
      GOCACHE: join(cacheDir, 'go-build'),
      GOTOOLCHAIN: 'local',
      GOPROXY: 'off',
      GOFLAGS: '',
      CGO_ENABLED: '0',
    },
  });
  return binary;
}

/**
 * A python3 interpreter that can import requests: the machine's own when it has requests, else a venv
 * under ~/.cache/detour with requests installed from PyPI (the tests' own, not the machine's).
 */
export async function pythonWithRequests(): Promise<{ python: string; requestsFrom: string }> {
  requireTool('python3', 'apt-get install python3');
  const system = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], {
    encoding: 'utf8',
  }).trim();
  const hasRequests = async (python: string) =>
    (await run([python, '-c', 'import requests'], { timeoutMs: 30_000 })).code === 0;
  if (await hasRequests(system)) return { python: system, requestsFrom: 'the machine' };
  const venv = join(cacheDir, 'python-requests');
  const python = join(venv, 'bin', 'python3');
  if (!(await hasRequests(python).catch(() => false))) {
    await mustRun([system, '-m', 'venv', venv], `python3 -m venv ${venv}`);
    await mustRun(
      [python, '-m', 'pip', 'install', '--quiet', 'requests'],
      'pip install requests (into the venv)',
    );
  }
  return { python, requestsFrom: venv };
}
