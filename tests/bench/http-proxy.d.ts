// The small part of `http-proxy` (no bundled types, and @types/http-proxy is not a dependency)
// that the benchmark baseline uses.
declare module 'http-proxy' {
  import type { Agent, IncomingMessage, ServerResponse } from 'node:http';

  interface ProxyServer {
    web(req: IncomingMessage, res: ServerResponse, options: { target: string }): void;
    on(event: 'error', listener: (error: Error, req: IncomingMessage, res: ServerResponse) => void): this;
  }
  const httpProxy: { createProxyServer(options: { agent?: Agent }): ProxyServer };
  export default httpProxy;
}
