// Sample system, first hop: frontend calls orders (by its cluster name) with the routing headers it
// received (x-dev, baggage) and answers JSON naming itself and what it called.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 8080);
const ordersUrl = process.env.ORDERS_URL ?? 'http://orders:8080/order';
const propagated = ['x-dev', 'baggage'];

function callerIdentity(xfcc: string | undefined): string | null {
  return /URI=([^;,]+)/.exec(xfcc ?? '')?.[1] ?? null;
}

async function call(url: string, headers: Record<string, string>) {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(8000) });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { url, status: res.status, body };
  } catch (error) {
    return { url, status: 0, error: (error as Error).message };
  }
}

createServer(async (req, res) => {
  const headers: Record<string, string> = {};
  for (const name of propagated) {
    const value = req.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const body = {
    service: 'frontend',
    version: process.env.VERSION ?? 'v1',
    pod: process.env.POD_NAME ?? 'local',
    path: req.url,
    from: callerIdentity(req.headers['x-forwarded-client-cert'] as string | undefined),
    headers: { 'x-dev': req.headers['x-dev'] ?? null, baggage: req.headers.baggage ?? null },
    called: [await call(ordersUrl, headers)],
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}).listen(port, () => console.log(`frontend listening on ${port}`));

process.once('SIGTERM', () => process.exit(0));
