import { fileURLToPath } from 'node:url';

/** Set by the package build (scripts/pack.mjs): the layer's bundle, beside the CLI's bundle. */
declare const DETOUR_BUNDLED_LAYER: string | undefined;

/** Absolute path of the preload entry, for NODE_OPTIONS of apps outside this workspace. */
export const registerPath: string = fileURLToPath(
  new URL(typeof DETOUR_BUNDLED_LAYER === 'string' ? DETOUR_BUNDLED_LAYER : './register.ts', import.meta.url),
);

/**
 * NODE_OPTIONS with the layer added (once) in front of what the app already had. `--require`, not
 * `--import`: it loads the (ESM) layer for CommonJS and ESM apps alike, and only --require preloads
 * from NODE_OPTIONS run in worker threads too.
 */
export function nodeOptionsWithLayer(existing = ''): string {
  if (existing.includes(registerPath) || existing.includes('@detour/layer')) return existing;
  return `--require ${JSON.stringify(registerPath)} ${existing}`.trim();
}
