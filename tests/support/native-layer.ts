import { fileURLToPath } from 'node:url';
import { run } from './processes.ts';

const buildScript = fileURLToPath(new URL('../../layer-preload/native/build.sh', import.meta.url));

/**
 * Builds the native preload layer (layer-preload/native/build.sh, as scripts/setup.sh does) and
 * returns its path; without a C compiler it fails with the script's message naming the package.
 */
export async function buildNativeLayer(): Promise<string> {
  const built = await run(['bash', buildScript], {
    timeoutMs: 120_000,
    what: 'layer-preload/native/build.sh',
  });
  if (built.code !== 0) throw new Error(`building the native layer failed:\n${built.stdout}${built.stderr}`);
  return built.stdout.trim();
}
