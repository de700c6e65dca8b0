import { syncBuiltinESMExports } from 'node:module';
import { whenBuiltinRequested } from './builtin-hook.ts';
import { nodeOptionsWithLayer } from './node-options.ts';

type Env = Record<string, string | undefined>;
type ChildProcessModule = typeof import('node:child_process');

/**
 * Every child process of the app starts in the session: the variables in `carried` (DETOUR_*, the
 * proxy variables) that its env lacks are put back and NODE_OPTIONS gets the layer, also when the
 * app passes a cleaned env (`env: { PATH }`) or starts a shell that starts node. The asynchronous
 * spawns (spawn, exec, execFile, fork) all end in `ChildProcess.prototype.spawn` with the final env
 * as `envPairs`; the synchronous ones are wrapped at their exports. A variable the app set for the
 * child itself is left as it is.
 */
export function patchChildProcess(carried: Record<string, string>): void {
  const sessionEnv = (env: Env): Env => {
    const result = { ...env };
    for (const [name, value] of Object.entries(carried)) result[name] ??= value;
    result.NODE_OPTIONS = nodeOptionsWithLayer(result.NODE_OPTIONS);
    return result;
  };
  whenBuiltinRequested('child_process', (childProcess: ChildProcessModule) => {
    patchAsyncSpawn(childProcess, sessionEnv);
    for (const name of ['spawnSync', 'execSync', 'execFileSync'] as const) {
      patchSyncSpawn(childProcess, name, sessionEnv);
    }
    // ES module namespaces of builtins copy the exports once; bring them up to date.
    syncBuiltinESMExports();
  });
}

function patchAsyncSpawn(childProcess: ChildProcessModule, sessionEnv: (env: Env) => Env): void {
  const prototype = childProcess.ChildProcess.prototype as unknown as {
    spawn(options: { envPairs?: string[] }): unknown;
  };
  const spawn = prototype.spawn;
  prototype.spawn = function detourSpawn(options) {
    if (options && Array.isArray(options.envPairs)) {
      const env = Object.fromEntries(
        options.envPairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
      );
      options.envPairs = Object.entries(sessionEnv(env)).map(([name, value]) => `${name}=${value}`);
    }
    return spawn.call(this, options);
  };
}

/** `spawnSync(file, args?, options?)`, `execFileSync(file, args?, options?)`, `execSync(command, options?)`. */
function patchSyncSpawn(
  childProcess: ChildProcessModule,
  name: 'spawnSync' | 'execSync' | 'execFileSync',
  sessionEnv: (env: Env) => Env,
): void {
  const original = childProcess[name] as (...args: unknown[]) => unknown;
  const wrapped = function detourSyncSpawn(this: unknown, ...args: unknown[]) {
    const last = args.at(-1);
    const hasOptions =
      args.length > 1 && (last === undefined || (typeof last === 'object' && !Array.isArray(last)));
    const options = (hasOptions ? (last ?? {}) : {}) as { env?: Env };
    const withEnv = { ...options, env: sessionEnv(options.env ?? process.env) };
    return Reflect.apply(original, this, hasOptions ? [...args.slice(0, -1), withEnv] : [...args, withEnv]);
  };
  (childProcess as Record<typeof name, unknown>)[name] = wrapped;
}
