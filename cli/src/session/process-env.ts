import { fileURLToPath } from 'node:url';
import { policyEnv } from '../egress/egress-policy.ts';

const layerRegister = fileURLToPath(import.meta.resolve('@detour/layer/register'));

export interface ProcessEnvInput {
  proxy: { host: string; port: number };
  routingHeaders: readonly string[];
  egressInclude: readonly string[];
  egressExclude: readonly string[];
}

/**
 * The variables that put a local process in the session: the Node layer for Node, the standard
 * proxy variables for curl, Go, Python and others, and the JVM's proxy properties.
 */
export function sessionProcessEnv(
  input: ProcessEnvInput,
  base: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const proxyAddress = `${input.proxy.host}:${input.proxy.port}`;
  const httpProxy = `http://${proxyAddress}`;
  const noProxy = ['localhost', '127.0.0.1', '::1', ...input.egressExclude].join(',');
  const nodeOptions = [base.NODE_OPTIONS, `--import ${layerRegister}`].filter(Boolean).join(' ');
  const jvm = [
    `-DsocksProxyHost=${input.proxy.host}`,
    `-DsocksProxyPort=${input.proxy.port}`,
    `-Dhttp.proxyHost=${input.proxy.host}`,
    `-Dhttp.proxyPort=${input.proxy.port}`,
    `-Dhttps.proxyHost=${input.proxy.host}`,
    `-Dhttps.proxyPort=${input.proxy.port}`,
    `-Dhttp.nonProxyHosts=${noProxy.replaceAll(',', '|')}`,
  ];
  return {
    DETOUR_PROXY: proxyAddress,
    DETOUR_ROUTING_HEADERS: input.routingHeaders.join(','),
    [policyEnv.include]: input.egressInclude.join(','),
    [policyEnv.exclude]: input.egressExclude.join(','),
    NODE_OPTIONS: nodeOptions,
    HTTP_PROXY: httpProxy,
    HTTPS_PROXY: httpProxy,
    http_proxy: httpProxy,
    https_proxy: httpProxy,
    ALL_PROXY: `socks5h://${proxyAddress}`,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    JAVA_TOOL_OPTIONS: [base.JAVA_TOOL_OPTIONS, ...jvm].filter(Boolean).join(' '),
  };
}
