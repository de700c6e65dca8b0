// Bundles the agent into one ES module for its container image (agent/Containerfile): no
// TypeScript stripping at run time (which alone costs tens of MiB of memory), no node_modules to ship.
import { bundle } from './bundle.mjs';

await bundle({ entryPoints: ['agent/src/main.ts'], outdir: 'dist/agent' });
