/**
 * Issue 11: no socket on detour's path may keep Nagle's algorithm on. A small write held back
 * until the peer ACKs the previous one meets the peer's delayed ACK: ~40 ms per request. With a
 * stolen request, its egress call and a pass-through request all held open (keep-alive), every
 * connected TCP socket of the agent and the CLI, and each connection the layer makes in the local
 * app, must have TCP_NODELAY set, read from the kernel (getsockopt, tests/support/tcp-nodelay.py), and each hop
 * of the path must be among them, so the check cannot pass on an empty list.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inboundUrl, paymentsName, ports, Rig } from '../support/detour.ts';
import { addresses } from '../support/netns.ts';
import type { ManagedProcess } from '../support/processes.ts';
import { childPids, type TcpSocketState, tcpSockets, withNagle } from '../support/tcp-nodelay.ts';

/**
 * In the cluster namespace: one keep-alive request per header value, each on its own connection,
 * answered in full, then the connections stay open until the process is stopped.
 */
const holderSource = `
const http = require('node:http');
const [url, ...devs] = process.argv.slice(1);
Promise.all(devs.map((dev) => new Promise((resolve, reject) => {
  const agent = new http.Agent({ keepAlive: true });
  const headers = dev === '-' ? {} : { 'x-dev': dev };
  http.get(url, { agent, headers }, (res) => {
    let body = '';
    res.on('data', (chunk) => { body += chunk; });
    res.on('end', () => resolve({ dev, status: res.statusCode, body }));
  }).on('error', reject);
}))).then((answers) => console.log(JSON.stringify({ answers })), (error) => { console.error(error); process.exit(1); });
setInterval(() => {}, 60_000);
`;

describe('TCP_NODELAY on every socket of the path (issue 11)', { timeout: 120_000 }, () => {
  let rig: Rig;
  let cli: ManagedProcess;
  let holder: ManagedProcess;

  before(async () => {
    rig = new Rig('nd');
    await rig.startApp('cluster', 'payments', { port: ports.payments, host: addresses.cluster });
    await rig.startApp('cluster', 'remote', { port: ports.remoteApp, host: addresses.cluster });
    await rig.startAgent();
    cli = await rig.startLocalAppSession('dev-n', 'dev-n');
    const egress = `http://${paymentsName}:${ports.payments}/charge`;
    holder = rig.start('cluster', 'keep-alive holder', [
      process.execPath,
      '-e',
      holderSource,
      `${inboundUrl}/egress?url=${encodeURIComponent(egress)}`,
      'dev-n',
      '-',
    ]);
    const line = (await holder.waitForLine(
      'stdout',
      (json) => Array.isArray(json.answers),
      'both requests answered',
    )) as { answers: Array<{ dev: string; status: number; body: string }> };
    const [stolen, passedThrough] = line.answers;
    assert.equal(stolen?.status, 200, JSON.stringify(line));
    assert.equal(JSON.parse(stolen.body).app, 'local');
    assert.equal(JSON.parse(JSON.parse(stolen.body).body).app, 'payments', 'the egress call answered');
    assert.equal(JSON.parse(passedThrough?.body ?? '{}').app, 'remote', JSON.stringify(line));
  });

  after(async () => {
    await rig?.close();
  });

  test('agent, CLI and the layer in the local app: every connected socket has TCP_NODELAY', async () => {
    const agentPid = rig.agent?.pid as number;
    const cliPid = cli.pid as number;
    const [appPid] = childPids(cliPid);
    assert.ok(appPid, 'the local app runs as the CLI child');
    // The app's own server sockets are the developer's code, not detour's: left out.
    const sockets = (await tcpSockets([agentPid, cliPid, appPid])).filter(
      (socket) => socket.pid !== appPid || socket.local !== `127.0.0.1:${ports.localApp}`,
    );
    const of = (pid: number) => sockets.filter((socket) => socket.pid === pid && socket.peer !== null);
    const has = (list: TcpSocketState[], what: string, match: (socket: TcpSocketState) => boolean) =>
      assert.ok(list.some(match), `no ${what} among ${JSON.stringify(list)}`);
    const agent = of(agentPid);
    const cliSockets = of(cliPid);
    const app = of(appPid);
    has(agent, 'tunnel accepted by the agent', (s) => s.local === `${addresses.pod}:${ports.tunnel}`);
    has(agent, 'inbound connection from the cluster', (s) => s.local === `${addresses.pod}:${ports.inbound}`);
    has(agent, 'egress dial to payments', (s) => s.peer === `${addresses.cluster}:${ports.payments}`);
    has(agent, 'pass-through to the real pods', (s) => s.peer === `${addresses.cluster}:${ports.remoteApp}`);
    has(cliSockets, 'CLI tunnel to the agent', (s) => s.peer === `${addresses.pod}:${ports.tunnel}`);
    has(cliSockets, 'CLI forwarder to the local app', (s) => s.peer === `127.0.0.1:${ports.localApp}`);
    has(
      app,
      "the layer's connection to the CLI's egress proxy",
      (s) => s.local?.startsWith('127.0.0.1:') ?? false,
    );
    has(cliSockets, "CLI egress proxy's accepted connection from the app", (s) =>
      app.some((a) => a.peer === s.local && a.local === s.peer),
    );
    assert.deepEqual(withNagle(sockets), []);
  });
});
