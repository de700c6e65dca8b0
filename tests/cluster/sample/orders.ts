// Sample system, middle hop: orders calls payments (by its cluster name). The same file runs in the
// cluster (`node /app/orders.ts`) and on the developer's machine under `detour exec`, where
// PAYMENTS_URL still names the cluster Service: the layer sends that call out through the agent.
import { parseArgs } from 'node:util';
import { serveHop } from './hop.ts';

// Flags win over the environment: under `detour exec` the process gets the target's env (PORT=8080,
// VERSION=v1 from the Deployment), while the local copy listens on the port the session maps to.
const { values: flags } = parseArgs({
  options: {
    port: { type: 'string' },
    version: { type: 'string' },
    name: { type: 'string' },
    log: { type: 'boolean' },
  },
});
serveHop({
  service: 'orders',
  port: Number(flags.port ?? process.env.PORT ?? 8080),
  version: flags.version ?? process.env.VERSION ?? 'v1',
  pod: flags.name ?? process.env.POD_NAME ?? 'local',
  // PAYMENTS_URL empty: a copy without payments (the no-mesh namespace has none).
  next: process.env.PAYMENTS_URL ?? 'http://payments:8080/pay',
  log: flags.log ?? false,
});
