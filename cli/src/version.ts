// What this CLI is: its release (cli/package.json, the one place the number lives), the tunnel
// protocol it speaks, and the agent image of the same release (agent/Containerfile built and tagged
// with that version). `detour --version` prints them; `detour install` deploys that image.
import { existsSync } from 'node:fs';
import { nativeLibraryPath, registerPath } from '@detour/layer';
import type { TunnelEndVersion } from '@detour/router/tunnel/index';
import { PROTOCOL_VERSION } from '@detour/router/tunnel/protocol';
import cliPackage from '../package.json' with { type: 'json' };

export const cliVersion: string = cliPackage.version;
export const tunnelProtocolVersion: number = PROTOCOL_VERSION;
/** A team pushes the image to its own registry and overrides this (kustomize `images:`, `--image`). */
export const agentImageRepository = 'detour/agent';
/** The agent image this CLI expects: its tag is the CLI's version. */
export const agentImage = `${agentImageRepository}:${cliVersion}`;

export interface VersionInfo {
  version: string;
  tunnelProtocol: number;
  agentImage: string;
  /**
   * The files this CLI puts into a local process (from the sources, or the installed package): the
   * Node preload, and the native preload library (null when it was not built).
   */
  layer: { node: string; native: string | null };
}

export function versionInfo(): VersionInfo {
  const native = nativeLibraryPath();
  return {
    version: cliVersion,
    tunnelProtocol: tunnelProtocolVersion,
    agentImage,
    layer: { node: registerPath, native: existsSync(native) ? native : null },
  };
}

/** One line for `detour --version`. */
export function versionText(): string {
  return `detour ${cliVersion} (tunnel protocol v${tunnelProtocolVersion}, agent image ${agentImage})`;
}

/**
 * What to do about an agent of another tunnel protocol (the CLI's refusal names it after both
 * versions). `namespace`: where the agent runs, when the CLI found it in a cluster.
 */
export function agentVersionFix(agent: TunnelEndVersion, namespace?: string): string {
  const install = namespace
    ? `\`detour install -n ${namespace}\` (image ${agentImage})`
    : `run the agent image ${agentImage}`;
  const agentsCli = agent.release ? `detour ${agent.release}` : 'the agent’s release';
  return agent.version < tunnelProtocolVersion
    ? `update the agent to this CLI’s release: ${install}; or use a CLI of ${agentsCli}`
    : `use a CLI of ${agentsCli} (npm install -g detour-${agent.release ?? '<version>'}.tgz); or put the agent of this CLI’s release back: ${install}`;
}
