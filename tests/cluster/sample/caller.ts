// A pod inside the mesh that sends requests for the tests (through its own sidecar, like any
// workload): `node /app/caller.ts` idles; `node /app/caller.ts get URL [name=value...]` prints one
// JSON answer; `node /app/caller.ts until URL VERSION TIMEOUT_MS [name=value...]` polls every 10 ms
// until the answer's `version` (or its first call's) equals VERSION and prints when that happened.
const [mode, url, ...rest] = process.argv.slice(2);

function headersOf(pairs: string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    headers[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return headers;
}

async function get(target: string, headers: Record<string, string>) {
  const res = await fetch(target, { headers, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: res.status, body: { text } };
  }
}

if (mode === undefined) {
  setInterval(() => {}, 3_600_000);
  process.once('SIGTERM', () => process.exit(0));
} else if (mode === 'get' && url) {
  console.log(JSON.stringify(await get(url, headersOf(rest))));
} else if (mode === 'until' && url) {
  const [version, timeoutMs, ...pairs] = rest;
  const headers = headersOf(pairs);
  const started = Date.now();
  console.log(JSON.stringify({ started }));
  let tries = 0;
  for (;;) {
    tries++;
    const answer: { status: number; body: Record<string, unknown> } = await get(url, headers).catch(
      (error: Error) => ({ status: 0, body: { error: error.message } }),
    );
    if (answer.body.version === version) {
      console.log(JSON.stringify({ reachedAt: Date.now(), tries, answer }));
      break;
    }
    if (Date.now() - started > Number(timeoutMs)) {
      console.log(JSON.stringify({ timedOut: true, tries, last: answer }));
      process.exitCode = 1;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
} else {
  console.error('usage: caller.ts [get URL [name=value...] | until URL VERSION TIMEOUT_MS [name=value...]]');
  process.exitCode = 2;
}
