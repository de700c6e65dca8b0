// node echo-app.ts NAME HOST:PORT
//
// The application behind a test sidecar: answers every request with JSON naming itself and echoing
// the request's headers (so a test sees x-dev, and x-forwarded-client-cert, which the server-side
// sidecar sets only for a request that arrived over mutual TLS).
import { createServer } from 'node:http';

const [name, listen] = process.argv.slice(2);
const match = /^(.+):(\d+)$/.exec(listen ?? '');
if (!name || !match?.[1] || !match[2]) {
  console.error('usage: node echo-app.ts NAME HOST:PORT');
  process.exit(2);
}
const server = createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers }));
});
server.listen(Number(match[2]), match[1], () => console.log(`${name} listening on ${listen}`));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
