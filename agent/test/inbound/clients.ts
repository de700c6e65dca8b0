/** Real clients for the inbound tests: curl (a separate process), node:http and node:http2. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';

export interface CurlResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs curl (asynchronously: the servers under test live in this process). */
export function curl(args: string[], timeoutMs = 15_000): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    execFile('curl', args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      if (code === 'ENOENT') {
        reject(new Error('these tests need curl: install it with `apt-get install curl` (Debian/Ubuntu)'));
        return;
      }
      resolve({ stdout, stderr, code: typeof code === 'number' ? code : 0 });
    });
  });
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: Buffer;
}

/** One HTTP/1.1 request on a fresh connection; the whole response, trailers included. */
export function request(
  url: string,
  options: http.RequestOptions = {},
  body?: Buffer | string,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent: false, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          trailers: res.trailers,
          body: Buffer.concat(chunks),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface Http2Response {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
}

/** One HTTP/2 prior-knowledge request. */
export async function request2(
  origin: string,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
): Promise<Http2Response> {
  const session = http2.connect(origin);
  try {
    return await new Promise<Http2Response>((resolve, reject) => {
      session.on('error', reject);
      const stream = session.request(headers);
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        head = h;
      });
      stream.on('trailers', (t) => {
        trailers = t;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => resolve({ headers: head, trailers, body: Buffer.concat(chunks) }));
      stream.on('error', reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
