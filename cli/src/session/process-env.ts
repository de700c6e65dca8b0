import { join } from 'node:path';
import { layerEnv, nativePreloadEnv, nodeOptionsWithLayer } from '@detour/layer';

export interface ProcessEnvInput {
  /** The egress proxy's own variables (DETOUR_PROXY, policy, the proxy variables, NO_PROXY). */
  proxyEnv: Record<string, string>;
  proxy: { host: string; port: number };
  routingHeaders: readonly string[];
  cacheDir: string;
}

/**
 * The variables that put a local process in the session: the Node layer for Node apps, the native
 * layer (LD_PRELOAD) for every other dynamically linked program (JVM, Python, curl, Ruby, cgo Go),
 * and the standard proxy variables (and lower-case twins) for what the native layer cannot reach
 * (static Go binaries). The JVM's proxy properties only where the native layer is not built: with
 * it, every JVM client is routed at connect() (tests/runtimes/java.test.ts runs them all without
 * the properties). Existing NODE_OPTIONS / JAVA_TOOL_OPTIONS / LD_PRELOAD are kept after detour's.
 */
export function sessionProcessEnv(
  input: ProcessEnvInput,
  base: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const { proxyEnv, proxy } = input;
  const noProxy = proxyEnv.NO_PROXY ?? 'localhost,127.0.0.1,::1';
  const jvm = [
    `-DsocksProxyHost=${proxy.host}`,
    `-DsocksProxyPort=${proxy.port}`,
    `-Dhttp.proxyHost=${proxy.host}`,
    `-Dhttp.proxyPort=${proxy.port}`,
    `-Dhttps.proxyHost=${proxy.host}`,
    `-Dhttps.proxyPort=${proxy.port}`,
    `-Dhttp.nonProxyHosts=${noProxy.replaceAll(',', '|')}`,
  ];
  const preload = nativePreloadEnv(base);
  const javaOptions =
    Object.keys(preload).length > 0 ? [base.JAVA_TOOL_OPTIONS] : [...jvm, base.JAVA_TOOL_OPTIONS];
  return {
    ...proxyEnv,
    ...preload,
    no_proxy: noProxy,
    [layerEnv.routingHeaders]: input.routingHeaders.join(','),
    NODE_OPTIONS: nodeOptionsWithLayer(base.NODE_OPTIONS),
    // Type-stripping the layer on every start costs ~200 ms; the compile cache makes it tens.
    NODE_COMPILE_CACHE: base.NODE_COMPILE_CACHE ?? join(input.cacheDir, 'node-compile-cache'),
    ...(javaOptions.some(Boolean) ? { JAVA_TOOL_OPTIONS: javaOptions.filter(Boolean).join(' ') } : {}),
  };
}
