// What a developer reads when the apiserver (or a proxy in front of it) refuses the port-forward's
// WebSocket upgrade: a real HTTPS server on loopback answers the upgrade as a refusing server
// would, and the CLI's dial to the agent fails with a code and the server's answer, not a bare
// "the tunnel connection closed". Also an upgrade the kubelet accepts and at once reports that
// nothing listens on the pod's port (an agent starting or stopping): the dial fails with that, and
// the CLI does not crash on an 'error' nobody listened to yet. The accepted upgrade is covered
// against the real apiserver by tests/e2e (every session's tunnel).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DetourError } from '@detour/router/errors';
import { KubeConfig } from '@kubernetes/client-node';
import { WebSocketServer } from 'ws';
import { makeTestCertificate } from '../../../tests/support/test-certificate.ts';
import { forwardToAgent } from '../../src/kube/agent-port-forward.ts';

describe('port-forward refused by the server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'detour-pf-'));
  const cert = makeTestCertificate(dir, ['apiserver.test']);
  let server: https.Server;
  /** The status and body the server answers every upgrade with (`hold`: body cut, connection kept). */
  let refusal: { status: number; body: string; hold?: boolean } = { status: 400, body: '' };
  /** When set, the upgrade is accepted and this is what the "kubelet" sends right after it. */
  let accepted: Buffer[] | undefined;
  const websockets = new WebSocketServer({ noServer: true, handleProtocols: () => 'v4.channel.k8s.io' });
  const seen: string[] = [];
  let kc: KubeConfig;

  before(async () => {
    server = https.createServer({ key: readFileSync(cert.keyFile), cert: readFileSync(cert.certFile) });
    server.on('upgrade', (req, socket, head) => {
      seen.push(`${req.method} ${req.url}`);
      const messages = accepted;
      if (messages) {
        websockets.handleUpgrade(req, socket, head, (ws) => {
          for (const message of messages) ws.send(message);
        });
        return;
      }
      const length = Buffer.byteLength(refusal.body) + (refusal.hold ? 1000 : 0);
      const answer = `HTTP/1.1 ${refusal.status} Refused\r\ncontent-type: text/plain\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n${refusal.body}`;
      if (refusal.hold) socket.write(answer);
      else socket.end(answer);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'test',
          server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
          caData: readFileSync(cert.certFile).toString('base64'),
          tlsServerName: 'apiserver.test',
        },
      ],
      users: [{ name: 'dev', token: 'not-a-real-token' }],
      contexts: [{ name: 'test', cluster: 'test', user: 'dev' }],
      currentContext: 'test',
    });
  });

  after(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const dialError = async (): Promise<DetourError> => {
    const forward = await forwardToAgent(kc, 'staging', 'detour-agent');
    const error = await forward.dial('detour-agent-0').then(
      () => assert.fail('the dial succeeded against a refusing server'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof DetourError, `not a DetourError: ${String(error)}`);
    assert.equal(forward.lastError(), error);
    return error;
  };

  it('a refused upgrade (a proxy without WebSocket) names the Service, the answer and what to check', async () => {
    refusal = { status: 400, body: '<html>\n  <h1>WebSocket upgrades are not allowed here</h1>\n</html>' };
    const error = await dialError();
    assert.equal(error.code, 'DETOUR_PORT_FORWARD');
    assert.match(error.message, /staging\/detour-agent/);
    assert.match(
      error.message,
      /answered 400 Refused: <html> <h1>WebSocket upgrades are not allowed here<\/h1> <\/html>/,
    );
    assert.match(error.message, /kubectl get pods -n staging/);
    assert.equal(seen.at(-1), 'GET /api/v1/namespaces/staging/pods/detour-agent-0/portforward?ports=7700');
  });

  it('a refusal whose body never ends fails after a bounded wait, with what arrived', async () => {
    refusal = { status: 502, body: 'upstream connect error', hold: true };
    const started = Date.now();
    const error = await dialError();
    assert.equal(error.code, 'DETOUR_PORT_FORWARD');
    assert.match(error.message, /answered 502 Refused: upstream connect error/);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  });

  it('a 403 (RBAC) quotes the apiserver and says which verbs on pods/portforward the role needs', async () => {
    // The apiserver's answer: a Status whose message names the user and the verb it lacks.
    const message =
      'pods "detour-agent-0" is forbidden: User "detour-dev" cannot get resource "pods/portforward" in API group "" in the namespace "staging"';
    refusal = {
      status: 403,
      body: JSON.stringify({
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        message,
        reason: 'Forbidden',
        code: 403,
      }),
    };
    const error = await dialError();
    assert.equal(error.code, 'DETOUR_PORT_FORWARD_FORBIDDEN');
    assert.ok(error.message.includes(`answered 403 Refused: ${message}`), error.message);
    assert.match(error.message, /get and create on pods\/portforward in staging/);
  });

  it('accepted, then nothing listens on the pod’s port: the dial fails with the kubelet’s words', async () => {
    const port = Buffer.alloc(2);
    port.writeUInt16LE(7700);
    const kubelet =
      'error forwarding port 7700 to pod 43f5f025, uid : failed to connect to localhost:7700 inside namespace "43f5f025", IPv4: dial tcp4 127.0.0.1:7700: connect: connection refused';
    // The port on the data and the error channel, then the error: what the kubelet sends at once.
    accepted = [
      Buffer.concat([Buffer.of(0), port]),
      Buffer.concat([Buffer.of(1), port]),
      Buffer.from(`\x01${kubelet}`),
    ];
    try {
      const error = await dialError();
      assert.equal(error.code, 'DETOUR_PORT_FORWARD');
      assert.ok(error.message.includes(`port-forward failed: ${kubelet}`), error.message);
    } finally {
      accepted = undefined;
    }
  });
});
