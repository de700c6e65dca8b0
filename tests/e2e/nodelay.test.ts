// Issue 11 on the real path: a `detour exec` session on the local cluster, its tunnel carried by
// the apiserver's port-forward (CLI's WebSocket → apiserver → kubelet → the agent's pod). With a
// stolen request served (the local orders app calls payments through the agent), every connected
// TCP socket of the CLI, of the layer in the local app, of the agent in its pod, of the
// apiserver ↔ kubelet hop and of the harness's socat relays must have TCP_NODELAY set, read from the
// kernel (tests/support/tcp-nodelay.py); each hop must be among them, so the check cannot pass
// empty. The apiserver must dial the kubelet itself, as in a real cluster: no relay on that hop.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nodeIp } from '../cluster/node.ts';
import { pidDir } from '../cluster/paths.ts';
import { ports } from '../cluster/ports.ts';
import { waitFor } from '../cluster/wait.ts';
import { freePort } from '../support/ports.ts';
import type { ManagedProcess } from '../support/processes.ts';
import { childPids, type TcpSocketState, tcpSockets, withNagle } from '../support/tcp-nodelay.ts';
import { agentHostPids, callerGet, execOrdersArgs, interrupt, startDetour, useSample } from './support.ts';

const dev = `nodelay-${process.pid}`;

const pidOf = (name: string) => Number(readFileSync(join(pidDir, `${name}.pid`), 'utf8'));
const kubeletAddress = `${nodeIp}:${ports.kubelet}`;

/** Every socat forwarder of the harness (pid files forward-*) and the relays each one forked. */
function forwarderPids(): number[] {
  return readdirSync(pidDir)
    .filter((file) => file.startsWith('forward-') && file.endsWith('.pid'))
    .map((file) => pidOf(file.slice(0, -'.pid'.length)))
    .flatMap((pid) => [pid, ...childPids(pid)]);
}

describe('TCP_NODELAY on every socket of the port-forwarded path (issue 11)', () => {
  let cli: ManagedProcess | undefined;

  before(async () => {
    await useSample((line) => console.log(`# ${line}`));
    const local = await freePort();
    cli = startDetour(execOrdersArgs(dev, local, ['--json', '--session', dev]));
    await waitFor(
      `x-dev: ${dev} to be answered by the local orders, its payments call answered too`,
      async () => {
        const answer = await callerGet('http://orders:8080/', { 'x-dev': dev });
        return answer.body.version === 'local' && answer.body.called?.[0]?.status === 200;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
  });

  after(async () => {
    if (!cli) return;
    interrupt(cli);
    await cli.exited;
  });

  it('CLI, the layer, the agent, apiserver ↔ kubelet and the socat relays: every connected socket has TCP_NODELAY', async () => {
    const cliPid = cli?.pid as number;
    const [appPid] = childPids(cliPid);
    assert.ok(appPid, 'the local orders app runs as the CLI child');
    // Every replica: the port-forward reaches whichever ready agent pod it picked.
    const agentPids = await agentHostPids();
    const relays = forwarderPids();
    const [apiserverPid, kubeletPid] = [pidOf('kube-apiserver'), pidOf('kubelet')];
    // The local app's own server sockets are the developer's code, not detour's: left out. Of the
    // apiserver and the kubelet, only the hop between them (their other sockets are not the path).
    const listening = new Set(
      (await tcpSockets([appPid])).filter((s) => s.listening).map((s) => s.local?.replace(/^.*:/, '')),
    );
    const onPath = (s: TcpSocketState) =>
      s.pid === appPid
        ? !listening.has(s.local?.replace(/^.*:/, ''))
        : s.pid === apiserverPid || s.pid === kubeletPid
          ? s.local === kubeletAddress || s.peer === kubeletAddress
          : true;
    const sockets = (
      await tcpSockets([cliPid, appPid, ...agentPids, apiserverPid, kubeletPid, ...relays])
    ).filter(onPath);
    const of = (pids: number[]) => sockets.filter((s) => pids.includes(s.pid) && s.peer !== null);
    const has = (list: TcpSocketState[], what: string, match: (s: TcpSocketState) => boolean) =>
      assert.ok(list.some(match), `no ${what} among ${JSON.stringify(list)}`);
    const cliSockets = of([cliPid]);
    has(
      cliSockets,
      "the port-forward's WebSocket to the apiserver",
      (s) => s.peer === `127.0.0.1:${ports.apiserver}`,
    );
    has(of([appPid]), "the layer's connection to the CLI's egress proxy", (s) =>
      cliSockets.some((c) => c.local === s.peer && c.peer === s.local),
    );
    has(of(agentPids), 'the tunnel accepted by the agent', (s) => s.local === '127.0.0.1:7700');
    has(
      of([apiserverPid]),
      "the apiserver's own connection to the kubelet",
      (s) => s.peer === kubeletAddress,
    );
    has(
      of([kubeletPid]),
      "the kubelet's end of the apiserver's connection",
      (s) => s.local === kubeletAddress,
    );
    has(
      of(relays),
      "a relay (the node's way to the apiserver)",
      (s) => s.peer === `127.0.0.1:${ports.apiserver}`,
    );
    assert.deepEqual(
      of(relays).filter(
        (s) => s.peer?.endsWith(`:${ports.kubelet}`) || s.local?.endsWith(`:${ports.kubelet}`),
      ),
      [],
      'no relay on the apiserver → kubelet hop',
    );
    assert.deepEqual(withNagle(sockets), []);
  });
});
