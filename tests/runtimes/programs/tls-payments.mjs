// The TLS face of "payments" in the cluster namespace: an HTTPS server whose certificate names
// payments and payments.staging.svc.cluster.local, so HTTPS clients check the real host name
// through the proxy's CONNECT tunnel. Answers like tests/support/apps/http-app.ts, plus tls: true.
//
//   node tls-payments.mjs --cert cert.pem --key key.pem --host 198.18.3.2 --port 9443
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '9443' },
  },
});

const server = https.createServer(
  { cert: readFileSync(values.cert ?? ''), key: readFileSync(values.key ?? '') },
  (request, response) => {
    const text = `${JSON.stringify({
      app: 'payments',
      tls: true,
      method: request.method,
      path: request.url,
      headers: request.headers,
    })}\n`;
    response.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    response.end(text);
  },
);
server.listen(Number(values.port), values.host, () => {
  process.stdout.write(`${JSON.stringify({ event: 'app.listening', port: server.address().port })}\n`);
});
