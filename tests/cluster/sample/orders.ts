// Sample system, middle hop: orders calls payments (by its cluster name) with the routing headers it
// received (x-dev, baggage) and answers JSON naming itself and what it called. The same file runs in
// the cluster (`node /app/orders.ts`) and on the developer's machine under `detour exec`, where
// PAYMENTS_URL still names the cluster Service: the layer sends that call out through the agent.
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

// Flags win over the environment: under `detour exec` the process gets the target's env (PORT=8080,
// VERSION=v1 from the Deployment), while the local copy listens on the port the session maps to.
const { values: flags } = parseArgs({
  options: { port: { type: 'string' }, version: { type: 'string' }, name: { type: 'string' } },
});
const port = Number(flags.port ?? process.env.PORT ?? 8080);
const version = flags.version ?? process.env.VERSION ?? 'v1';
const podName = flags.name ?? process.env.POD_NAME ?? 'local';
const paymentsUrl = process.env.PAYMENTS_URL ?? 'http://payments:8080/pay';
const propagated = ['x-dev', 'baggage'];

function callerIdentity(xfcc: string | undefined): string | null {
  return /URI=([^;,]+)/.exec(xfcc ?? '')?.[1] ?? null;
}

async function call(url: string, headers: Record<string, string>) {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
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
    service: 'orders',
    version,
    pod: podName,
    path: req.url,
    from: callerIdentity(req.headers['x-forwarded-client-cert'] as string | undefined),
    headers: { 'x-dev': req.headers['x-dev'] ?? null, baggage: req.headers.baggage ?? null },
    called: [await call(paymentsUrl, headers)],
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}).listen(port, () => console.log(`orders ${version} listening on ${port}`));

process.once('SIGTERM', () => process.exit(0));
