/**
 * Opens `--streams` concurrent HTTP/2 (h2c) streams to `--url`, spread over `--connections`
 * connections, with `--header name=value`, and prints {statuses: {code: count}, ms} as one JSON
 * line. Used with the app's /barrier, which answers only once all of them are in flight.
 */
import http2 from 'node:http2';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    streams: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '10' },
    header: { type: 'string', multiple: true, default: [] },
  },
});
const url = new URL(values.url ?? '');
const headers = Object.fromEntries(
  (values.header ?? []).map((header) => {
    const at = header.indexOf('=');
    return [header.slice(0, at), header.slice(at + 1)];
  }),
);
const streams = Number(values.streams);
const sessions = Array.from({ length: Number(values.connections) }, () => http2.connect(url.origin));
const started = Date.now();
const statuses: Record<string, number> = {};
const timer = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ error: 'timed out after 30 s', statuses })}\n`);
  process.exit(1);
}, 30_000);

await Promise.all(
  Array.from(
    { length: streams },
    (_, i) =>
      new Promise<void>((resolve) => {
        const session = sessions[i % sessions.length] as http2.ClientHttp2Session;
        const request = session.request({ ':path': `${url.pathname}${url.search}`, ...headers });
        request.on('response', (head) => {
          const status = String(head[':status']);
          statuses[status] = (statuses[status] ?? 0) + 1;
        });
        request.resume();
        request.on('close', () => resolve());
        request.on('error', (error: Error) => {
          statuses[error.message] = (statuses[error.message] ?? 0) + 1;
        });
        request.end();
      }),
  ),
);
clearTimeout(timer);
for (const session of sessions) session.close();
process.stdout.write(`${JSON.stringify({ statuses, ms: Date.now() - started })}\n`);
