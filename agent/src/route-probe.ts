import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { PROBE_HEADER, type RouteProbeResult } from '@detour/router/tunnel/protocol';

/**
 * Route-live verification from inside the mesh: the agent sends a request carrying the session's
 * header to the target Service, through its own sidecar, so the caller side of Istio routes it as
 * it routes everyone's. If the session's route is in effect, the request comes back to this
 * agent's inbound listener, which recognises the nonce and answers it; otherwise the real pods do.
 */
export class RouteProbes {
  readonly #pending = new Set<string>();

  /** Answers a probe this agent sent; false for every other request. */
  answer(nonce: string | string[] | undefined): boolean {
    return typeof nonce === 'string' && this.#pending.has(nonce);
  }

  probe(url: string, headers: Record<string, string>, timeoutMs = 5_000): Promise<RouteProbeResult> {
    const nonce = randomBytes(12).toString('hex');
    this.#pending.add(nonce);
    return new Promise<RouteProbeResult>((resolve) => {
      const request = http.request(url, {
        method: 'HEAD',
        headers: { ...headers, [PROBE_HEADER]: nonce },
        agent: false,
        timeout: timeoutMs,
      });
      request.on('response', (response) => {
        response.resume();
        const live = response.headers[PROBE_HEADER] === nonce;
        resolve({
          live,
          detail: live
            ? 'answered by this agent'
            : `answered ${response.statusCode} by someone else (the route is not in effect yet)`,
        });
      });
      request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      request.on('error', (error) => resolve({ live: false, detail: error.message }));
      request.end();
    }).finally(() => this.#pending.delete(nonce));
  }
}
