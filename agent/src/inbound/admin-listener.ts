/**
 * The agent's admin port, apart from the inbound port so probes and scrapes never mix with routed
 * traffic (and the mesh never routes to it): `GET /healthz` (the process is alive), `GET /readyz`
 * (it can take traffic), `GET /metrics` (Prometheus text format).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listenOn } from './listen-on.ts';
import { type MetricsRegistry, prometheusContentType } from './metrics.ts';

export interface AdminListenerOptions {
  metrics: MetricsRegistry;
  /** Ready to take traffic (the inbound and tunnel listeners are up); a reason when not. */
  readiness: () => true | string;
  /** Default 0.0.0.0 (kubelet probes and Prometheus connect from outside the pod). */
  host?: string;
  port?: number;
}

export class AdminListener {
  private readonly server: http.Server;
  private readonly options: AdminListenerOptions;

  private constructor(options: AdminListenerOptions) {
    this.options = options;
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  static async listen(options: AdminListenerOptions): Promise<AdminListener> {
    const listener = new AdminListener(options);
    await listenOn(listener.server, options.port ?? 0, options.host ?? '0.0.0.0');
    return listener;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const [status, body, contentType] = this.answer(
      req.method ?? 'GET',
      (req.url ?? '/').split('?')[0] ?? '/',
    );
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  private answer(method: string, path: string): [number, string, string] {
    if (method !== 'GET' && method !== 'HEAD') return [405, 'only GET and HEAD are served here\n', text];
    switch (path) {
      case '/healthz':
        return [200, 'ok\n', text];
      case '/readyz': {
        const ready = this.options.readiness();
        return ready === true ? [200, 'ready\n', text] : [503, `not ready: ${ready}\n`, text];
      }
      case '/metrics':
        return [200, this.options.metrics.render(), prometheusContentType];
      default:
        return [404, 'not found: this port serves /healthz, /readyz and /metrics\n', text];
    }
  }
}

const text = 'text/plain; charset=utf-8';
