import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The variable that loads a shared library into every dynamically linked process, per platform. */
const preloadVariable: Partial<Record<NodeJS.Platform, string>> = {
  linux: 'LD_PRELOAD',
  darwin: 'DYLD_INSERT_LIBRARIES',
};

/**
 * Where `layer-preload/native/build.sh` (run by scripts/setup.sh) puts the native layer for this
 * machine: `native/out/<platform>-<arch>/libdetour.so` (`.dylib` on macOS).
 */
export function nativeLibraryPath(platform = process.platform, arch = process.arch): string {
  const file = platform === 'darwin' ? 'libdetour.dylib' : 'libdetour.so';
  return fileURLToPath(new URL(`../native/out/${platform}-${arch}/${file}`, import.meta.url));
}

/**
 * The preload variable that loads the native layer into non-Node processes (`LD_PRELOAD=<lib>` on
 * Linux), with what the app already preloads kept after it; empty when this platform has no
 * preload variable or the library is not built.
 */
export function nativePreloadEnv(
  existing: NodeJS.ProcessEnv,
  library = nativeLibraryPath(),
  platform = process.platform,
): Record<string, string> {
  const name = preloadVariable[platform];
  if (!name || !existsSync(library)) return {};
  const others = (existing[name] ?? '').split(/[:\s]+/).filter((entry) => entry && entry !== library);
  return { [name]: [library, ...others].join(':') };
}
