// `npm run pack`: the CLI as an npm package, dist/detour-<version>.tgz, for `npm install -g` on a
// machine with only Node 24. Bundled like the agent (scripts/bundle.mjs): no workspace sources, no
// TypeScript stripping at run time, no dependencies to install. The package holds
//   dist/detour.mjs (+ chunks)   the CLI: bins `detour` and `kubectl-detour` (a kubectl plugin)
//   dist/register.mjs            the Node layer the CLI puts in NODE_OPTIONS (found beside the CLI)
//   native/out/<os>-<arch>/      the native preload library, when layer-preload/native built one
//   manifests/                   what `detour install` applies, and the RBAC to bind

import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundle } from './bundle.mjs';

const root = join(import.meta.dirname, '..');
const cli = JSON.parse(readFileSync(join(root, 'cli', 'package.json'), 'utf8'));
const workspace = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const staging = join(root, 'dist', 'package');

await bundle({
  entryPoints: {
    detour: join(root, 'cli/src/bin.ts'),
    register: join(root, 'layer-preload/src/register.ts'),
  },
  outdir: join(staging, 'dist'),
  // The layer's path is computed relative to the bundle (layer-preload/src/node-options.ts).
  define: { DETOUR_BUNDLED_LAYER: JSON.stringify('./register.mjs') },
  // The bundled libraries' licences go with them (dist/*.LEGAL.txt).
  legalComments: 'linked',
});

const native = join(root, 'layer-preload', 'native', 'out');
if (existsSync(native))
  cpSync(native, join(staging, 'native', 'out'), { recursive: true, filter: (f) => !f.endsWith('.o') });
cpSync(join(root, 'manifests'), join(staging, 'manifests'), { recursive: true });
cpSync(join(root, 'README.md'), join(staging, 'README.md'));
writeFileSync(
  join(staging, 'package.json'),
  `${JSON.stringify(
    {
      name: 'detour',
      version: cli.version,
      description: workspace.description,
      type: 'module',
      bin: { detour: 'dist/detour.mjs', 'kubectl-detour': 'dist/detour.mjs' },
      engines: { node: '>=24' },
    },
    null,
    2,
  )}\n`,
);
mkdirSync(join(root, 'dist'), { recursive: true });
const tarball = join(root, 'dist', `detour-${cli.version}.tgz`);
rmSync(tarball, { force: true });
execFileSync('npm', ['pack', '--silent', '--pack-destination', join(root, 'dist')], {
  cwd: staging,
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (!existsSync(tarball)) throw new Error(`npm pack wrote no ${tarball}`);
console.log(tarball);
