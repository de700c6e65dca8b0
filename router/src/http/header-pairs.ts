/**
 * Header lists as they cross the tunnel (ordered name/value pairs, names lower-case) and the
 * conversions to and from what node:http, node:http2 and undici take. Connection-specific
 * ("hop-by-hop") fields are dropped whenever headers cross from one connection to another:
 * they describe the connection they arrived on, not the message (RFC 9110 §7.6.1).
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import type { HeaderPairs } from '../tunnel/protocol.ts';

/** Always connection-specific (RFC 9110 §7.6.1, RFC 9113 §8.2.2), plus h2c's upgrade settings. */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'http2-settings',
]);

/** Names a `Connection` header lists are connection-specific too. */
function connectionOptions(flat: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i] as string;
    if (name.length === 10 && name.toLowerCase() === 'connection') {
      for (const option of (flat[i + 1] as string).split(',')) {
        const trimmed = option.trim().toLowerCase();
        if (trimmed && trimmed !== 'close' && trimmed !== 'keep-alive' && trimmed !== 'upgrade') {
          listed ??= new Set();
          listed.add(trimmed);
        }
      }
    }
  }
  return listed;
}

export interface StripOptions {
  /** Keep `Connection: upgrade` and `Upgrade` (a request or 101 response that switches protocols). */
  keepUpgrade?: boolean;
  /** Also drop these (lower-case) names, e.g. `host` when the authority travels separately. */
  drop?: ReadonlySet<string>;
}

/**
 * Turns a flat raw header list (`rawHeaders`: name, value, name, value, ...) into pairs with
 * lower-case names, without hop-by-hop fields and HTTP/2 pseudo-headers. `te: trailers` is kept:
 * it is the one TE value HTTP/2 allows, and gRPC servers require it.
 */
export function headerPairsFromRaw(flat: readonly string[], options: StripOptions = {}): HeaderPairs {
  const listed = connectionOptions(flat);
  const pairs: HeaderPairs = [];
  for (let i = 0; i < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    const value = flat[i + 1] as string;
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    if (hopByHop.has(name)) {
      if (name === 'te') {
        if (value.trim().toLowerCase() === 'trailers') pairs.push([name, 'trailers']);
        continue;
      }
      if (!options.keepUpgrade || (name !== 'upgrade' && name !== 'connection')) continue;
      if (name === 'connection') {
        pairs.push([name, 'upgrade']);
        continue;
      }
    }
    if (listed?.has(name) || options.drop?.has(name)) continue;
    pairs.push([name, value]);
  }
  return pairs;
}

/** Pairs into a flat list for `res.writeHead(status, flat)` and `http.request({ headers: flat })`. */
export function flattenPairs(pairs: HeaderPairs, extra?: HeaderPairs): string[] {
  const flat: string[] = [];
  for (const [name, value] of pairs) flat.push(name, value);
  if (extra) for (const [name, value] of extra) flat.push(name, value);
  return flat;
}

/** Pairs into a node:http2 header object; repeated names become arrays (set-cookie). */
export function pairsToHttp2(pairs: HeaderPairs, into: OutgoingHttpHeaders = {}): OutgoingHttpHeaders {
  for (const [name, value] of pairs) {
    if (name === 'host') continue; // HTTP/2 carries it as :authority
    const existing = into[name];
    if (existing === undefined) into[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else into[name] = [String(existing), value];
  }
  return into;
}

/** A header object (node:http2's, or undici's response headers and trailers) into pairs, without pseudo and hop-by-hop. */
export function pairsFromHttp2(headers: Record<string, string | string[] | number | undefined>): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 || hopByHop.has(name)) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) pairs.push([name, item]);
    else pairs.push([name, String(value)]);
  }
  return pairs;
}

/** The value of the first header with that (lower-case) name. */
export function headerValue(pairs: HeaderPairs, name: string): string | undefined {
  for (const [key, value] of pairs) if (key === name) return value;
  return undefined;
}

/** gRPC over HTTP/2 answers errors with "trailers only"; its trailers are these headers. */
export function isGrpc(contentType: string | undefined): boolean {
  return contentType?.startsWith('application/grpc') === true;
}

/**
 * A `grpc-message` value: the gRPC spec percent-encodes only bytes outside printable ASCII and
 * `%` itself (clients decode exactly that; `encodeURIComponent` would leave `%3A` in the text).
 */
export function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out +=
      byte < 0x20 || byte > 0x7e || byte === 0x25
        ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(byte);
  }
  return out;
}
