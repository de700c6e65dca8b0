// The agent's tunnel listener refuses a CLI of another protocol version: the CLI is told both
// versions and the command that fixes it, and the agent's log says the same.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DirectDialer } from '@detour/router/egress/direct-dialer';
import { PROTOCOL_VERSION, TunnelCode } from '@detour/router/tunnel/index';
import { frameJson, helloAs } from '@detour/router/tunnel/scripted-peer';
import agentPackage from '../package.json' with { type: 'json' };
import { SessionRegistry } from '../src/session-registry.ts';
import { startTunnelListener } from '../src/tunnel-listener.ts';

describe('agent: a CLI of another tunnel protocol version', () => {
  const logged: Array<Record<string, unknown>> = [];
  let listener: Awaited<ReturnType<typeof startTunnelListener>>;
  let port: number;
  const release = agentPackage.version;

  before(async () => {
    listener = await startTunnelListener({
      host: '127.0.0.1',
      port: 0,
      tokens: ['t'],
      agentName: 'detour-agent-0',
      namespace: 'staging',
      registry: new SessionRegistry(),
      dialer: new DirectDialer(),
      log: { info: () => {}, warn: (event, fields) => logged.push({ event, ...fields }) },
    });
    port = (listener.server.address() as AddressInfo).port;
  });
  after(() => listener.server.close());

  async function refusal(cli: { version: number; release: string }) {
    const [goaway] = await helloAs(port, cli);
    const answer = frameJson(goaway);
    assert.equal(answer.code, TunnelCode.version);
    assert.equal(answer.version, PROTOCOL_VERSION, 'the agent says its version');
    assert.equal(answer.release, release, 'and its release');
    return String(answer.message);
  }

  it('a newer CLI: update the agent with `detour install -n staging` from that CLI', async () => {
    const message = await refusal({ version: PROTOCOL_VERSION + 1, release: '9.0.0' });
    assert.equal(
      message,
      `the CLI speaks tunnel protocol v${PROTOCOL_VERSION + 1} (detour 9.0.0) but this agent speaks v${PROTOCOL_VERSION} (detour ${release}): update this agent to the CLI’s release: \`detour install -n staging\` with that CLI (detour 9.0.0)`,
    );
    const { event, code, reason } = logged.at(-1) ?? {};
    assert.deepEqual(
      { event, code, reason },
      { event: 'tunnel.refused', code: TunnelCode.version, reason: message },
    );
  });

  it('an older CLI: a CLI of the agent’s release, or the older agent installed by that CLI', async () => {
    const message = await refusal({ version: PROTOCOL_VERSION - 1, release: '0.0.1' });
    assert.match(
      message,
      new RegExp(
        `^the CLI speaks tunnel protocol v${PROTOCOL_VERSION - 1} \\(detour 0\\.0\\.1\\) but this agent speaks v${PROTOCOL_VERSION} .*: use a CLI of this agent’s release \\(detour ${release.replaceAll('.', '\\.')}\\), or install the agent of the CLI’s release with \`detour install -n staging\` from that CLI$`,
      ),
    );
  });
});
