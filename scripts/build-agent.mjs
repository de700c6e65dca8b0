// Bundles the agent into one ES module for its container image (agent/Containerfile): no
// TypeScript stripping at run time (which alone costs tens of MiB of memory), no node_modules to ship.
// Whitespace and comments are dropped: V8 keeps every module's source in the heap, and a comment with
// one non-ASCII character (undici's `response’s`) makes it a two-byte string (~2.5 MiB resident).
import { bundle } from './bundle.mjs';

await bundle({ entryPoints: ['agent/src/main.ts'], outdir: 'dist/agent', minifyWhitespace: true });
