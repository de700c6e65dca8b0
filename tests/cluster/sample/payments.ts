// Sample system, last hop: payments answers JSON naming itself, its version and pod, the routing
// headers it received, and who called it (the SPIFFE identity the caller's sidecar presented, taken
// from the x-forwarded-client-cert header the server-side sidecar sets). Self-contained: it runs as
// `node /app/payments.ts` in the Node base image, where no repo package exists.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 8080);

/** The URI= element of x-forwarded-client-cert: the calling workload's mesh identity. */
function callerIdentity(xfcc: string | undefined): string | null {
  return /URI=([^;,]+)/.exec(xfcc ?? '')?.[1] ?? null;
}

createServer((req, res) => {
  const body = {
    service: 'payments',
    version: process.env.VERSION ?? 'v1',
    pod: process.env.POD_NAME ?? 'local',
    path: req.url,
    from: callerIdentity(req.headers['x-forwarded-client-cert'] as string | undefined),
    headers: { 'x-dev': req.headers['x-dev'] ?? null, baggage: req.headers.baggage ?? null },
    called: [],
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}).listen(port, () => console.log(`payments ${process.env.VERSION ?? 'v1'} listening on ${port}`));

process.once('SIGTERM', () => process.exit(0));
