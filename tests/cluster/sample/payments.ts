// Sample system, last hop: payments calls nobody.
import { serveHop } from './hop.ts';

serveHop({
  service: 'payments',
  port: Number(process.env.PORT ?? 8080),
  version: process.env.VERSION ?? 'v1',
  pod: process.env.POD_NAME ?? 'local',
});
