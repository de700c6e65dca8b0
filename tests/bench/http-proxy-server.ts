/**
 * The baseline Node proxy for case 1: the npm package `http-proxy` with the same header check
 * the agent and Envoy do. Usage: node http-proxy-server.ts LISTEN_PORT UPSTREAM_PORT SESSION_PORT
 */
import http from 'node:http';
import httpProxy from 'http-proxy';

const [listenPort, upstreamPort, sessionPort] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ agent });
const upstream = `http://127.0.0.1:${upstreamPort}`;
const session = `http://127.0.0.1:${sessionPort}`;

proxy.on('error', (_error, _req, res) => {
  const response = res;
  if (!response.headersSent) response.writeHead(502);
  response.end();
});

http
  .createServer((req, res) => {
    proxy.web(req, res, { target: req.headers['x-dev'] === 'dev-a' ? session : upstream });
  })
  .listen(listenPort, '127.0.0.1');
