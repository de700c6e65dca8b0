// Bundles the agent into one ES module for its container image: no TypeScript stripping at run
// time (which alone costs tens of MiB of memory), no node_modules to ship.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Chunk names carry content hashes: start from an empty folder so stale chunks never ship.
rmSync('dist/agent', { recursive: true, force: true });

await build({
  entryPoints: ['agent/src/main.ts'],
  outdir: 'dist/agent',
  outExtension: { '.js': '.mjs' },
  // The Kubernetes client is loaded only when the agent talks to the apiserver: its own chunk.
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
});
