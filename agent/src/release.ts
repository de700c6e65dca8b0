// The agent's detour release (agent/package.json; the image built from agent/Containerfile carries
// the same number as its tag) and what a developer does about a CLI of another tunnel protocol.
import type { TunnelEndVersion } from '@detour/router/tunnel/index';
import { PROTOCOL_VERSION } from '@detour/router/tunnel/protocol';
import agentPackage from '../package.json' with { type: 'json' };

export const agentRelease: string = agentPackage.version;

/**
 * The fix in this agent's refusal of a CLI of another protocol version (its log, and the CLI's
 * message when that CLI is older than this fix). `namespace`: where this agent runs.
 */
export function cliVersionFix(namespace: string | undefined): (cli: TunnelEndVersion) => string {
  const install = `\`detour install${namespace ? ` -n ${namespace}` : ''}\``;
  return (cli) =>
    cli.version > PROTOCOL_VERSION
      ? `update this agent to the CLI’s release: ${install} with that CLI${cli.release ? ` (detour ${cli.release})` : ''}`
      : `use a CLI of this agent’s release (detour ${agentRelease}), or install the agent of the CLI’s release with ${install} from that CLI`;
}
