// Sample system, first hop: frontend calls orders (by its cluster name).
import { serveHop } from './hop.ts';

serveHop({
  service: 'frontend',
  port: Number(process.env.PORT ?? 8080),
  version: process.env.VERSION ?? 'v1',
  pod: process.env.POD_NAME ?? 'local',
  next: process.env.ORDERS_URL ?? 'http://orders:8080/order',
  timeoutMs: 8000,
});
