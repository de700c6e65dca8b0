// The agent image a team builds (agent/Containerfile, with docker/podman/buildah/kaniko) and the one
// the local cluster runs (build-images.sh, no image builder here) are the same image: the packed
// archive's config is the Containerfile's, its app layer holds exactly what the Containerfile
// copies, and its base has the files the Containerfile takes from the node stage.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { cacheDir, repoRoot } from '../paths.ts';
import { parseContainerfile } from '../sample/containerfile.ts';

const containerfile = parseContainerfile(readFileSync(join(repoRoot, 'agent', 'Containerfile'), 'utf8'));

describe('agent/Containerfile', () => {
  it('builds a minimal non-root image of the agent bundle', () => {
    assert.equal(containerfile.base, 'gcr.io/distroless/cc-debian12:nonroot', 'no shell, no package manager');
    assert.deepEqual(containerfile.copies, [{ source: 'dist/agent/', destination: '/app/agent/' }]);
    assert.deepEqual(containerfile.fromStages, [
      { stage: 'node', source: '/usr/local/bin/node', destination: '/usr/local/bin/node' },
    ]);
    assert.deepEqual(containerfile.config.Entrypoint, ['/usr/local/bin/node', '/app/agent/main.mjs']);
    assert.equal(containerfile.config.WorkingDir, '/app');
    assert.deepEqual(containerfile.config.Env, ['NODE_ENV=production']);
  });

  it('runs as the numeric non-root user manifests/agent runs it as', () => {
    const deployment = parse(readFileSync(join(repoRoot, 'manifests', 'agent', 'deployment.yaml'), 'utf8'));
    const pod = deployment.spec.template.spec.securityContext;
    assert.equal(pod.runAsNonRoot, true);
    assert.equal(containerfile.config.User, `${pod.runAsUser}:${pod.runAsGroup}`);
    assert.notEqual(pod.runAsUser, 0);
  });

  it('is refused where the local packing could not follow it, naming the line', () => {
    assert.throws(() => parseContainerfile('FROM a\nRUN apt-get install -y curl\n'), {
      code: 'CLUSTER_CONTAINERFILE',
      message: /line "RUN apt-get install -y curl": RUN cannot be packed without an image builder/,
    });
    assert.throws(() => parseContainerfile('FROM a\nENTRYPOINT node main.mjs\n'), /not valid JSON|exec form/);
  });
});

describe('the local cluster’s agent image (build-images.sh agent) is agent/Containerfile’s', () => {
  let work: string;
  let config: { config: Record<string, unknown> };
  let baseFiles: string[];
  let appFiles: string[];

  /** The member paths of a tar archive, without the leading ./ (and without ./ itself). */
  const tarList = (file: string) =>
    execFileSync('tar', ['-tf', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
      .split('\n')
      .map((path) => path.replace(/^\.\//, ''))
      .filter(Boolean);

  before(() => {
    // A cache of its own (the shared one's images are what the running cluster imports); the
    // node base image reused from the shared cache when it is there, else built.
    work = mkdtempSync(join(tmpdir(), 'detour-agent-image-'));
    mkdirSync(join(work, 'cache', 'images'), { recursive: true });
    const nodeVersion = process.versions.node;
    const base = join(cacheDir, 'images', `node-${nodeVersion}.oci.tar`);
    if (existsSync(base)) symlinkSync(base, join(work, 'cache', 'images', `node-${nodeVersion}.oci.tar`));
    execFileSync('bash', [join(repoRoot, 'tests', 'cluster', 'sample', 'build-images.sh'), 'agent'], {
      env: { ...process.env, DETOUR_CACHE: join(work, 'cache') },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const oci = join(work, 'oci');
    mkdirSync(oci);
    execFileSync('tar', ['-xf', join(work, 'cache', 'images', 'agent.oci.tar'), '-C', oci]);
    const blob = (digest: string) => join(oci, 'blobs', 'sha256', digest.slice('sha256:'.length));
    const index = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8'));
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
    config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8'));
    const [baseLayer, appLayer] = manifest.layers as Array<{ digest: string }>;
    baseFiles = tarList(blob(baseLayer?.digest ?? ''));
    appFiles = tarList(blob(appLayer?.digest ?? ''));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('has the Containerfile’s config: entrypoint, user, workdir, env, labels', () => {
    assert.deepEqual(config.config, containerfile.config);
  });

  it('its app layer holds exactly the bundle the Containerfile copies (dist/agent/ → /app/agent/)', () => {
    const bundle = readdirSync(join(repoRoot, 'dist', 'agent')).map((file) => `app/agent/${file}`);
    assert.deepEqual(appFiles.filter((path) => !path.endsWith('/')).sort(), bundle.sort());
    assert.ok(appFiles.includes('app/agent/main.mjs'), 'the entrypoint’s script');
  });

  it('its base has what the Containerfile takes from the node stage, where the entrypoint runs it', () => {
    for (const { destination } of containerfile.fromStages)
      assert.ok(baseFiles.includes(destination.slice(1)), `${destination} in the base layer`);
    assert.ok(baseFiles.includes(String(containerfile.config.Entrypoint[0]).slice(1)));
  });
});
