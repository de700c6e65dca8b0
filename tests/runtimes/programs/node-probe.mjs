// A plain Node program with nothing detour-specific in it: it looks a cluster name up and calls it
// with node:http and with fetch. Only NODE_OPTIONS (the layer) and DETOUR_* from the environment
// route it. Prints one JSON line: {layer, lookup, http, fetch}.
//
//   node node-probe.mjs http://host:port/path
import dns from 'node:dns/promises';
import http from 'node:http';

const url = new URL(process.argv[2]);

function get(target) {
  return new Promise((resolve, reject) => {
    const request = http.get(target, { timeout: 10_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk) => {
        body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode, body: JSON.parse(body) }));
    });
    request.on('timeout', () => request.destroy(new Error(`timed out: ${target}`)));
    request.on('error', reject);
  });
}

const layer = globalThis[Symbol.for('detour.layer.installed')];
const lookup = await dns.lookup(url.hostname);
const viaHttp = await get(new URL(`${url.pathname}/http`, url));
const response = await fetch(new URL(`${url.pathname}/fetch`, url), { signal: AbortSignal.timeout(10_000) });
const viaFetch = { status: response.status, body: await response.json() };
process.stdout.write(
  `${JSON.stringify({ layer: layer?.active ?? false, lookup, http: viaHttp, fetch: viaFetch })}\n`,
);
