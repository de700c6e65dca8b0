// esbuild options shared by the agent's image bundle (build-agent.mjs) and the CLI package
// (pack.mjs): one ES module per entry plus shared chunks, no TypeScript stripping at run time,
// no node_modules to ship.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

/** Bundles `entryPoints` into `outdir`, emptied first: chunk names carry hashes, stale ones must not ship. */
export function bundle({ entryPoints, outdir, ...more }) {
  rmSync(outdir, { recursive: true, force: true });
  return build({
    entryPoints,
    outdir,
    outExtension: { '.js': '.mjs' },
    // Modules loaded on demand (the Kubernetes client, the CLI's commands) get their own chunks.
    splitting: true,
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    // Some dependencies are CommonJS and call require(): give the bundle a real one.
    banner: {
      js: "import { createRequire as __detourRequire } from 'node:module'; const require = __detourRequire(import.meta.url);",
    },
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
    ...more,
  });
}
