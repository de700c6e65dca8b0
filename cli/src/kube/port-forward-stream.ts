import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import WebSocket from 'ws';
import { connectRightSizedTls } from './right-sized-tls.ts';

/** Offered in this order, as client-node offers them; the apiserver picks one (the kubelet's WebSocket port-forward). */
const protocols = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
const dataChannel = 0;
const errorChannel = 1;
/** Bytes the tunnel may queue here before its writes see writableNeedDrain. */
const writableHighWaterMark = 256 * 1024;

/**
 * One port-forward to `pod:port` as a Duplex: the bytes of the pod's port, with nothing in between
 * (no loopback listener, no per-call copy into a second socket). The apiserver's WebSocket
 * port-forward (channel protocol: each message is a channel byte, 0 data, 1 error, then bytes; the
 * first two bytes of each channel from the server are the port) with client-node's KubeConfig for
 * the address and credentials. Backpressure both ways: a write completes once ws handed it to
 * the socket, and a reader that stops reading pauses the WebSocket's socket. The
 * socket runs without Nagle (ws sets TCP_NODELAY on it).
 */
export async function openPortForward(
  kc: KubeConfig,
  namespace: string,
  pod: string,
  port: number,
): Promise<Duplex> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/portforward?ports=${port}`,
    server.replace(/^http/, 'ws'),
  );
  const options: WebSocket.ClientOptions = { perMessageDeflate: false };
  await kc.applyToHTTPSOptions(options);
  // client-node puts the cluster's TLS settings in a plain https.Agent made for this call (its
  // credentials in the options too); ws opens the connection itself with the agent's settings, its
  // reads sized to what arrived (right-sized-tls.ts). A proxy's agent (proxy-url) is kept as it is.
  const agent = options.agent;
  if (url.protocol === 'wss:' && agent instanceof https.Agent && agent.constructor === https.Agent) {
    const { options: agentOptions } = agent as https.Agent & { options: https.AgentOptions };
    Object.assign(options, { ...agentOptions, ...options });
    delete options.agent;
    // ws types this hook as net.createConnection; for wss: it calls it with TLS options.
    options.createConnection = connectRightSizedTls as unknown as typeof net.createConnection;
  }
  const ws = new WebSocket(url, protocols, options);
  // Listening from the start: the kubelet's first messages (the port) may come with the upgrade.
  const stream = new PortForwardStream(ws);
  await new Promise<void>((resolve, reject) => {
    const fail = (error: Error) => {
      ws.terminate();
      reject(error);
    };
    ws.once('open', () => {
      ws.off('error', fail);
      stream.opened();
      // The kubelet's first messages come with the upgrade: the port, or at once an error (nothing
      // listens on the pod's port: an agent starting or stopping). Read them before handing the
      // stream over, so such an error fails this dial instead of a stream nobody listens to yet.
      const early = (error: Error) => reject(error);
      stream.once('error', early);
      setImmediate(() => {
        stream.off('error', early);
        if (stream.destroyed) reject(stream.errored ?? new Error('the port-forward closed at once'));
        else resolve();
      });
    });
    ws.once('error', fail);
    ws.once('unexpected-response', (req, res) => {
      void refusalDetail(res).then((detail) => {
        req.destroy();
        const status = `${res.statusCode} ${res.statusMessage ?? ''}`.trim();
        fail(new Error(`the apiserver answered ${status}${detail ? `: ${detail}` : ''}`));
      });
    });
  });
  return stream;
}

/** Most of a refusal's body read for its message, and the longest wait for it. */
const refusalBodyBytes = 4096;
const refusalBodyMs = 2000;

/**
 * What a server that refused the upgrade said: the `message` of the apiserver's Status (which names
 * the user and the verb RBAC denied), else the start of the body as text (a proxy's page).
 */
function refusalDetail(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // A server that keeps the refusal's connection open without ending its body gets cut off.
    const timer = setTimeout(() => done(), refusalBodyMs);
    const done = () => {
      clearTimeout(timer);
      res.destroy();
      const text = Buffer.concat(chunks).toString('utf8').slice(0, refusalBodyBytes);
      try {
        const status = JSON.parse(text) as { message?: unknown };
        if (typeof status.message === 'string') return resolve(status.message);
      } catch {
        // not a Status: the text itself
      }
      resolve(text.replace(/\s+/g, ' ').trim().slice(0, 300));
    };
    res.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= refusalBodyBytes) done();
    });
    res.once('end', done);
    res.once('error', done);
  });
}

class PortForwardStream extends Duplex {
  readonly #ws: WebSocket;
  /** Each channel's first two bytes from the server are the port number. */
  readonly #portBytesLeft = [2, 2];
  #errorText = '';

  constructor(ws: WebSocket) {
    super({ allowHalfOpen: false, writableHighWaterMark });
    this.#ws = ws;
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary || data.length === 0) return;
      this.#onMessage(data[0] as number, data.subarray(1));
    });
  }

  /** From the upgrade on, the WebSocket's end and failures are the stream's. */
  opened(): void {
    this.#ws.on('error', (error) => this.destroy(error));
    this.#ws.on('close', () => {
      if (this.#errorText) this.destroy(new Error(`port-forward failed: ${this.#errorText.trim()}`));
      else this.push(null);
    });
  }

  #onMessage(channel: number, bytes: Buffer): void {
    const skip = Math.min(this.#portBytesLeft[channel] ?? 0, bytes.length);
    if (skip > 0) (this.#portBytesLeft[channel] as number) -= skip;
    const payload = bytes.subarray(skip);
    if (payload.length === 0) return;
    if (channel === dataChannel) {
      if (!this.push(payload)) this.#ws.pause();
    } else if (channel === errorChannel) {
      this.#errorText += payload.toString('utf8');
      this.destroy(new Error(`port-forward failed: ${this.#errorText.trim()}`));
    }
  }

  override _read(): void {
    if (this.#ws.isPaused) this.#ws.resume();
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    // What the tunnel wrote meanwhile, as one message: the channel byte, then every chunk. The
    // callback waits for ws to hand it to the socket, so writes queue up here (and the tunnel sees
    // writableNeedDrain) while the apiserver is slower than the tunnel.
    const message = Buffer.concat([Buffer.of(dataChannel), ...chunks.map(({ chunk }) => chunk)]);
    this.#ws.send(message, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#ws.send(Buffer.concat([Buffer.of(dataChannel), chunk]), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#ws.close(1000);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#ws.terminate();
    callback(error);
  }
}
