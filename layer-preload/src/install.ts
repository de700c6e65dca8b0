import net from 'node:net';
import { injectRoutingHeaders } from './inject-headers.ts';
import { nativeLibraryPath } from './native-library.ts';
import { patchChildProcess } from './patch-child-process.ts';
import { patchDns } from './patch-dns.ts';
import { patchNet } from './patch-net.ts';
import { ProxyClient } from './proxy-client.ts';
import { hideProxyVariables, proxyVariables } from './proxy-variables.ts';
import { RoutingContext } from './routing-context.ts';
import { type LayerSettings, layerEnv, readSettings } from './settings.ts';

const installed = Symbol.for('detour.layer.installed');

export interface LayerState {
  /** False when DETOUR_PROXY is unset: nothing was patched. */
  active: boolean;
  settings?: LayerSettings;
}

/**
 * Patches this thread's node modules once (a second load, e.g. both --require and --import, or a
 * second copy of the package, finds the global marker and returns). Workers load the layer again
 * through NODE_OPTIONS/execArgv and patch their own modules.
 */
export function install(env: NodeJS.ProcessEnv = process.env): LayerState {
  const registry = globalThis as unknown as Record<symbol, LayerState | undefined>;
  const existing = registry[installed];
  if (existing) return existing;
  const settings = readSettings(env);
  const state: LayerState = settings ? { active: true, settings } : { active: false };
  registry[installed] = state;
  if (!settings) return state;

  const unpatchedConnect = net.Socket.prototype.connect as (
    this: net.Socket,
    ...args: unknown[]
  ) => net.Socket;
  const client = new ProxyClient(settings, unpatchedConnect);
  patchNet(settings.policy, client, unpatchedConnect);
  patchDns(settings.policy, client);
  const proxyHostPort = env[layerEnv.proxy]?.trim() ?? '';
  hideProxyVariables(env, proxyHostPort);
  patchChildProcess({
    ...Object.fromEntries(
      Object.entries(env).filter((entry): entry is [string, string] => entry[0].startsWith('DETOUR_')),
    ),
    ...proxyVariables(proxyHostPort),
    // The native layer for children that are not node (it is inert in this process: native/interpose.c).
    ...Object.fromEntries(
      ['LD_PRELOAD', 'DYLD_INSERT_LIBRARIES'].flatMap((name) =>
        env[name]?.includes(nativeLibraryPath()) ? [[name, env[name]]] : [],
      ),
    ),
  });
  if (settings.routingHeaders.length > 0 || Object.keys(settings.defaultHeaders).length > 0) {
    const routing = new RoutingContext(settings.routingHeaders, settings.defaultHeaders);
    routing.captureInboundRequests();
    injectRoutingHeaders(settings.policy, routing);
  }
  return state;
}
