import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '@detour/router/tunnel/protocol';

export interface DetourVersions {
  cli: string;
  protocol: number;
  /** The agent image this CLI installs and expects. */
  agentImage: string;
}

/** What this CLI is, speaks and installs (install, doctor and ephemeral agents read it here only). */
export function detourVersions(): DetourVersions {
  const { version } = JSON.parse(
    readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8'),
  ) as {
    version: string;
  };
  return { cli: version, protocol: PROTOCOL_VERSION, agentImage: `detour/agent:${version}` };
}
