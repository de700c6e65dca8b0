import net from 'node:net';
import type { Readable } from 'node:stream';

/**
 * The SOCKS5 wire format (RFC 1928) as detour's loopback egress proxy speaks it, shared by the proxy
 * and by the Node preload layer (its client). Besides CONNECT it serves Tor's RESOLVE (0xF0, remote
 * DNS for SOCKS clients, one address), and two commands of detour's own for the layer: FORWARD
 * (0xDE) asks the proxy to dial a target and hand the connection over on a one-shot loopback port
 * (see the layer's README); RESOLVE_ALL (0xDF) answers every address of a name: BND.ADDR is the
 * first, BND.PORT their number, and the others follow as ATYP + ADDR + PORT(0) fields.
 */
export const SOCKS_VERSION = 0x05;
export const AUTH_NONE = 0x00;
export const AUTH_UNACCEPTABLE = 0xff;

export const Command = {
  connect: 0x01,
  bind: 0x02,
  udpAssociate: 0x03,
  resolve: 0xf0,
  forward: 0xde,
  resolveAll: 0xdf,
} as const;
export const AddressType = { ipv4: 0x01, domain: 0x03, ipv6: 0x04 } as const;

export const Reply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
  // detour-only codes, sent only in replies to FORWARD and RESOLVE from the layer so that it can
  // raise exactly the errno the app would see without detour.
  detourHostUnreachable: 0xe4,
  detourTunnelDown: 0xe1,
  detourConnectionReset: 0xe2,
} as const;

const replyByCode: Record<string, number> = {
  ENOTFOUND: Reply.hostUnreachable,
  EAI_AGAIN: Reply.hostUnreachable,
  ECONNREFUSED: Reply.connectionRefused,
  ENETUNREACH: Reply.networkUnreachable,
  ETIMEDOUT: Reply.ttlExpired,
  EHOSTUNREACH: Reply.detourHostUnreachable,
  DETOUR_TUNNEL_DOWN: Reply.detourTunnelDown,
  ECONNRESET: Reply.detourConnectionReset,
  DETOUR_EGRESS_DENIED: Reply.notAllowed,
};

const codeByReply: Record<number, string> = {
  [Reply.generalFailure]: 'DETOUR_EGRESS_FAILED',
  [Reply.notAllowed]: 'DETOUR_EGRESS_DENIED',
  [Reply.networkUnreachable]: 'ENETUNREACH',
  [Reply.hostUnreachable]: 'ENOTFOUND',
  [Reply.connectionRefused]: 'ECONNREFUSED',
  [Reply.ttlExpired]: 'ETIMEDOUT',
  [Reply.detourHostUnreachable]: 'EHOSTUNREACH',
  [Reply.detourTunnelDown]: 'DETOUR_TUNNEL_DOWN',
  [Reply.detourConnectionReset]: 'ECONNRESET',
};

/** The reply code for a dialer error's `code`; `standard` folds detour-only codes into RFC 1928's. */
export function replyForErrorCode(code: string | undefined, standard: boolean): number {
  const reply = replyByCode[code ?? ''] ?? Reply.generalFailure;
  if (!standard || reply < 0x09) return reply;
  return reply === Reply.detourHostUnreachable ? Reply.hostUnreachable : Reply.generalFailure;
}

/** The errno-like code for a reply code (the inverse of `replyForErrorCode` with standard=false). */
export function errorCodeForReply(reply: number): string {
  return codeByReply[reply] ?? 'DETOUR_EGRESS_FAILED';
}

/** ATYP + address + port, for a request or a reply. */
export function encodeAddress(host: string, port: number): Buffer {
  const portBytes = Buffer.from([port >> 8, port & 0xff]);
  if (net.isIPv4(host)) {
    return Buffer.concat([Buffer.from([AddressType.ipv4, ...host.split('.').map(Number)]), portBytes]);
  }
  if (net.isIPv6(host)) return Buffer.concat([Buffer.from([AddressType.ipv6]), ipv6Bytes(host), portBytes]);
  const name = Buffer.from(host, 'utf8');
  if (name.length > 255) throw new RangeError(`host name longer than 255 bytes: ${host.slice(0, 40)}...`);
  return Buffer.concat([Buffer.from([AddressType.domain, name.length]), name, portBytes]);
}

/** Reads ATYP + address + port from a stream (after VER CMD/REP RSV). */
export async function readAddress(stream: Readable): Promise<{ host: string; port: number; type: number }> {
  const [type] = await readExactly(stream, 1);
  let host: string;
  if (type === AddressType.ipv4) host = [...(await readExactly(stream, 4))].join('.');
  else if (type === AddressType.ipv6) host = formatIpv6(await readExactly(stream, 16));
  else if (type === AddressType.domain) {
    const [length = 0] = await readExactly(stream, 1);
    host = (await readExactly(stream, length)).toString('utf8');
  } else throw Object.assign(new Error(`unknown SOCKS5 address type ${type}`), { code: 'ESOCKSATYP' });
  const portBytes = await readExactly(stream, 2);
  return { host, port: portBytes.readUInt16BE(0), type: type ?? 0 };
}

/**
 * Reads exactly n bytes, leaving whatever follows in the stream's buffer for the next reader (the
 * relay, after the handshake). Rejects when the stream ends or fails first.
 */
export function readExactly(stream: Readable, n: number): Promise<Buffer> {
  if (n === 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const tryRead = () => {
      const chunk: Buffer | null = stream.read(n);
      if (chunk === null) return;
      cleanup();
      if (chunk.length < n)
        reject(Object.assign(new Error('connection closed early'), { code: 'ECONNRESET' }));
      else resolve(chunk);
    };
    const onEnd = () => {
      cleanup();
      reject(Object.assign(new Error('connection closed early'), { code: 'ECONNRESET' }));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      stream.off('readable', tryRead).off('end', onEnd).off('error', onError).off('close', onEnd);
    };
    stream.on('readable', tryRead).on('end', onEnd).on('error', onError).on('close', onEnd);
    tryRead();
  });
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail] = address.split('::');
  const parse = (part: string) => (part ? part.split(':') : []);
  let groups = [...parse(head), ...(tail === undefined ? [] : parse(tail))];
  const last = groups.at(-1);
  if (last && net.isIPv4(last)) {
    const [a = 0, b = 0, c = 0, d = 0] = last.split('.').map(Number);
    groups = [...groups.slice(0, -1), ((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
  }
  if (tail !== undefined) {
    const headGroups = parse(head).length;
    const fill = 8 - groups.length;
    groups = [...groups.slice(0, headGroups), ...Array(fill).fill('0'), ...groups.slice(headGroups)];
  }
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}

function formatIpv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // The URL parser compresses zeros canonically (RFC 5952).
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}
