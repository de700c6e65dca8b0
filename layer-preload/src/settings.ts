import { EgressPolicy } from '@detour/router/egress/egress-policy';
import { InvalidInputError } from '@detour/router/errors';

/** The layer's environment variables; `detour exec` and `detour env` set them. */
export const layerEnv = {
  /** `127.0.0.1:<port>` of the CLI's egress proxy. Without it the layer stays inactive. */
  proxy: 'DETOUR_PROXY',
  /** Routing header names to carry from an inbound request to outbound calls (`x-dev,baggage`). */
  routingHeaders: 'DETOUR_ROUTING_HEADERS',
  /** JSON object of headers for outbound calls made outside any request (`{"x-dev":"dev-a"}`). */
  defaultHeaders: 'DETOUR_DEFAULT_HEADERS',
  /** Milliseconds to wait for the proxy's answer (it includes the dial inside the cluster). */
  proxyTimeout: 'DETOUR_PROXY_TIMEOUT_MS',
} as const;

export interface LayerSettings {
  proxy: { host: string; port: number };
  policy: EgressPolicy;
  routingHeaders: string[];
  defaultHeaders: Record<string, string>;
  proxyTimeoutMs: number;
}

/** Reads the settings; undefined when DETOUR_PROXY is unset (the layer then patches nothing). */
export function readSettings(env: NodeJS.ProcessEnv = process.env): LayerSettings | undefined {
  const proxyValue = env[layerEnv.proxy]?.trim();
  if (!proxyValue) return undefined;
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(proxyValue);
  if (!match) {
    throw new InvalidInputError(
      'DETOUR_LAYER_SETTINGS_INVALID',
      `${layerEnv.proxy}="${proxyValue}" is not host:port; set it to the address \`detour env\` prints (e.g. 127.0.0.1:1080)`,
    );
  }
  let defaultHeaders: Record<string, string> = {};
  const defaultsValue = env[layerEnv.defaultHeaders]?.trim();
  if (defaultsValue) {
    try {
      const parsed: unknown = JSON.parse(defaultsValue);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object');
      defaultHeaders = Object.fromEntries(
        Object.entries(parsed).map(([name, value]) => [name.toLowerCase(), String(value)]),
      );
    } catch {
      throw new InvalidInputError(
        'DETOUR_LAYER_SETTINGS_INVALID',
        `${layerEnv.defaultHeaders} must be a JSON object of header names to values, e.g. {"x-dev":"dev-a"}`,
      );
    }
  }
  return {
    proxy: { host: match[1] ?? match[2] ?? '127.0.0.1', port: Number(match[3]) },
    policy: EgressPolicy.fromEnv(env),
    routingHeaders: (env[layerEnv.routingHeaders] ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
    defaultHeaders,
    proxyTimeoutMs: Number(env[layerEnv.proxyTimeout]) || 30_000,
  };
}
