import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROBE_HEADER, type RouteProbeResult } from '@detour/router/tunnel/protocol';

export interface ProbeOptions {
  /** A copy of the probe arriving within this long after someone else answered counts (mirror). */
  copyWaitMs?: number;
  /** Return the answer's value of this header. */
  responseHeader?: string;
  timeoutMs?: number;
  /** The method a filter on :method needs (default HEAD). */
  method?: string;
}

/**
 * Route-live verification from inside the mesh: the agent sends a request carrying the session's
 * header to the target Service, through its own sidecar, so the caller side of Istio routes it as
 * it routes everyone's. If the session's route is in effect, the request comes back to this
 * agent's inbound listener, which recognises the nonce and answers it; otherwise the real pods do.
 * A mirror route sends the real pods' answer back and a copy to this agent: that copy counts.
 */
export class RouteProbes {
  /** Nonces in flight, each resolved when its request (or a copy of it) reaches this agent. */
  readonly #pending = new Map<string, PromiseWithResolvers<void>>();

  /** Answers a probe this agent sent; false for every other request. */
  answer(nonce: string | string[] | undefined): boolean {
    const pending = typeof nonce === 'string' ? this.#pending.get(nonce) : undefined;
    pending?.resolve();
    return pending !== undefined;
  }

  probe(url: string, headers: Record<string, string>, options: ProbeOptions = {}): Promise<RouteProbeResult> {
    const timeoutMs = options.timeoutMs ?? 5_000;
    const nonce = randomBytes(12).toString('hex');
    const arrived = Promise.withResolvers<void>();
    this.#pending.set(nonce, arrived);
    return new Promise<RouteProbeResult>((resolve) => {
      const request = http.request(url, {
        method: options.method ?? 'HEAD',
        headers: { ...headers, [PROBE_HEADER]: nonce },
        agent: false,
        timeout: timeoutMs,
      });
      request.on('response', async (response) => {
        response.resume();
        const value = options.responseHeader
          ? response.headers[options.responseHeader.toLowerCase()]
          : undefined;
        const header = typeof value === 'string' ? { header: value } : {};
        if (response.headers[PROBE_HEADER] === nonce) {
          resolve({ live: true, detail: 'answered by this agent', ...header });
          return;
        }
        const copied =
          options.copyWaitMs !== undefined &&
          (await Promise.race([arrived.promise.then(() => true), sleep(options.copyWaitMs, false)]));
        resolve({
          live: copied,
          detail: copied
            ? `answered ${response.statusCode} by the real pods, and a copy reached this agent`
            : `answered ${response.statusCode} by someone else (the route is not in effect yet)`,
          ...header,
        });
      });
      request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      request.on('error', (error) => resolve({ live: false, detail: error.message }));
      request.end();
    }).finally(() => this.#pending.delete(nonce));
  }
}
