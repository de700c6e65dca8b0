/**
 * The standard proxy variables pointing at the CLI's egress proxy (`host:port`), upper and lower
 * case: curl reads only `http_proxy` in lower case, grpc-js only lower case, Go and Python either.
 */
export function proxyVariables(proxyHostPort: string): Record<string, string> {
  const variables = {
    ALL_PROXY: `socks5h://${proxyHostPort}`,
    HTTP_PROXY: `http://${proxyHostPort}`,
    HTTPS_PROXY: `http://${proxyHostPort}`,
  };
  return {
    ...variables,
    ...Object.fromEntries(Object.entries(variables).map(([name, value]) => [name.toLowerCase(), value])),
  };
}

/**
 * Takes the proxy variables that point at detour's proxy out of this Node process's env. They are
 * there for other programs; in a process with the layer every socket already goes through the
 * proxy, and a Node client that honours them (grpc-js, axios, undici's EnvHttpProxyAgent) would
 * send its calls to the proxy's address instead: one hop more, and the layer, seeing a loopback
 * destination, would not add the routing headers. Children get them back (patch-child-process).
 */
export function hideProxyVariables(env: NodeJS.ProcessEnv, proxyHostPort: string): void {
  for (const [name, value] of Object.entries(proxyVariables(proxyHostPort))) {
    if (env[name] === value) delete env[name];
  }
}
