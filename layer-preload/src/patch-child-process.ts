import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { whenBuiltinRequested } from './builtin-hook.ts';

const registerPath = fileURLToPath(new URL('./register.ts', import.meta.url));

/**
 * A child `node` inherits the layer through NODE_OPTIONS and the DETOUR_* variables. When the app
 * starts it with a cleaned env (`env: { PATH }`), they are put back: every asynchronous spawn
 * (spawn, exec, execFile, fork) goes through `ChildProcess.prototype.spawn` with the final env as
 * `envPairs`. spawnSync/execSync/execFileSync do not, so a child started by them with a cleaned env
 * runs without the layer. Other programs (not node) are left alone.
 */
export function patchChildProcess(env: NodeJS.ProcessEnv): void {
  whenBuiltinRequested('child_process', (childProcess: typeof import('node:child_process')) =>
    patchSpawn(childProcess, env),
  );
}

function patchSpawn(childProcess: typeof import('node:child_process'), env: NodeJS.ProcessEnv): void {
  const carried = Object.entries(env).filter(([name]) => name.startsWith('DETOUR_'));
  const prototype = childProcess.ChildProcess.prototype as unknown as {
    spawn(options: { file?: string; envPairs?: string[] }): unknown;
  };
  const spawn = prototype.spawn;
  prototype.spawn = function detourSpawn(options) {
    if (options && Array.isArray(options.envPairs) && isNode(options.file)) {
      const names = new Set(options.envPairs.map((pair) => pair.slice(0, pair.indexOf('='))));
      const pairs = options.envPairs.filter((pair) => !pair.startsWith('NODE_OPTIONS='));
      for (const [name, value] of carried) if (!names.has(name)) pairs.push(`${name}=${value}`);
      const nodeOptions = options.envPairs.find((pair) => pair.startsWith('NODE_OPTIONS='))?.slice(13) ?? '';
      const hasLayer = nodeOptions.includes('@detour/layer') || nodeOptions.includes(registerPath);
      pairs.push(
        `NODE_OPTIONS=${hasLayer ? nodeOptions : `--require ${JSON.stringify(registerPath)} ${nodeOptions}`.trim()}`,
      );
      options.envPairs = pairs;
    }
    return spawn.call(this, options);
  };
}

function isNode(file: string | undefined): boolean {
  if (!file) return false;
  return file === process.execPath || /^node(js)?(\.exe)?$/i.test(path.basename(file));
}
