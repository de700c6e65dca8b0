/**
 * Builds the runtime test programs with this machine's own toolchains (javac, go, python3), offline,
 * into a temporary directory. A missing tool fails the test with its name and how to install it:
 * a runtime row must never pass by being skipped.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

/**
 * The JVM client libraries of programs/jvm-clients/pom.xml (Reactor Netty, Apache HttpClient 5,
 * OkHttp, the PostgreSQL driver) from Maven Central with `mvn dependency:copy-dependencies`, cached
 * under ~/.cache/detour (fetched again only when the pom changes), and programs/ClientsProbe.java
 * compiled against them. Returns the classpath that runs ClientsProbe.
 */
export async function compileJvmClients(into: string): Promise<string> {
  const fix = 'apt-get install openjdk-17-jdk-headless (any JDK 11 or later)';
  const javac = requireTool('javac', fix);
  const mvn = requireTool('mvn', 'apt-get install maven');
  const pom = join(programsDir, 'jvm-clients', 'pom.xml');
  const jars = join(cacheDir, 'jvm-clients');
  const fetchedPom = join(jars, 'pom.xml');
  const fetched = (() => {
    try {
      return readFileSync(fetchedPom, 'utf8') === readFileSync(pom, 'utf8');
    } catch {
      return false;
    }
  })();
  const noJvmOptions = { ...process.env, JAVA_TOOL_OPTIONS: '', MAVEN_OPTS: '' };
  if (!fetched) {
    rmSync(jars, { recursive: true, force: true });
    await mustRun(
      [
        mvn,
        '-B',
        '-q',
        '-f',
        pom,
        `-Dmaven.repo.local=${join(cacheDir, 'm2')}`,
        'dependency:copy-dependencies',
        `-DoutputDirectory=${jars}`,
      ],
      'mvn dependency:copy-dependencies (programs/jvm-clients/pom.xml, from Maven Central)',
      { env: noJvmOptions },
    );
    copyFileSync(pom, fetchedPom);
  }
  const classes = join(into, 'jvm-clients');
  mkdirSync(classes, { recursive: true });
  await mustRun(
    [javac, '-cp', join(jars, '*'), '-d', classes, join(programsDir, 'ClientsProbe.java')],
    'javac ClientsProbe.java',
    { env: noJvmOptions },
  );
  return `${classes}:${join(jars, '*')}`;
}

/**
 * Builds programs/go-probe (stdlib only) offline, with the build cache under ~/.cache/detour:
 * static (CGO_ENABLED=0, what `go build` makes without a C toolchain and what most Go images
 * ship) or linked against libc (`cgo`), the only kind a preload library can enter.
 */
export async function buildGo(into: string, options: { cgo?: boolean } = {}): Promise<string> {
  const go = requireTool(
    'go',
    '. scripts/go-env.sh puts Go 1.26 on PATH (fetched when missing; scripts/test.sh does it)',
  );
  const binary = join(into, options.cgo ? 'go-probe-cgo' : 'go-probe');
  await mustRun([go, 'build', '-o', binary, 'main.go'], `go build go-probe${options.cgo ? ' (cgo)' : ''}`, {
    cwd: join(programsDir, 'go-probe'),
    env: {
      ...process.env,
      GOCACHE: join(cacheDir, 'go-build'),
      GOTOOLCHAIN: 'local',
      GOPROXY: 'off',
      GOFLAGS: '',
      CGO_ENABLED: options.cgo ? '1' : '0',
    },
  });
  return binary;
}

/** Compiles programs/rust_probe.rs (std only) with the machine's rustc: no crates, no network. */
export async function buildRust(into: string): Promise<string> {
  const rustc = requireTool('rustc', 'install Rust from https://rustup.rs (or apt-get install rustc)');
  const binary = join(into, 'rust-probe');
  await mustRun(
    [rustc, '-O', '--edition', '2021', '-o', binary, join(programsDir, 'rust_probe.rs')],
    'rustc rust_probe.rs',
  );
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
