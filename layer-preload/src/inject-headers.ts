import diagnosticsChannel from 'node:diagnostics_channel';
import type http from 'node:http';
import type http2 from 'node:http2';
import type { EgressPolicy } from '@detour/router/egress/egress-policy';
import { whenBuiltinRequested } from './builtin-hook.ts';
import type { RoutingContext } from './routing-context.ts';

/**
 * Adds the routing headers to outbound calls that go remote (into the mesh), never replacing a
 * header the app set: http/https through `http.client.request.created`, undici (npm and the copy
 * behind the built-in fetch publish on the same channel) through `undici:request:create`, and
 * http2 (and so grpc-js) by wrapping `session.request` of sessions from `http2.connect`.
 */
export function injectRoutingHeaders(policy: EgressPolicy, routing: RoutingContext): void {
  const toAdd = (host: string | undefined) =>
    host && policy.decide(host) === 'remote' ? routing.outboundHeaders() : {};

  diagnosticsChannel.subscribe('http.client.request.created', (message) => {
    const request = (message as { request: http.ClientRequest }).request;
    // Headers given as an array are already serialized here; those requests are left as they are.
    if (request.headersSent || (request as unknown as { _header?: string })._header) return;
    for (const [name, value] of Object.entries(toAdd(request.host))) {
      if (!request.hasHeader(name)) request.setHeader(name, value);
    }
  });

  diagnosticsChannel.subscribe('undici:request:create', (message) => {
    const request = (message as { request: UndiciRequest }).request;
    let host: string | undefined;
    try {
      host = new URL(request.origin).hostname.replace(/^\[|\]$/g, '');
    } catch {}
    const present = existingUndiciHeaders(request.headers);
    for (const [name, value] of Object.entries(toAdd(host))) {
      if (!present.has(name)) request.addHeader(name, value);
    }
  });

  whenBuiltinRequested('http2', (http2: typeof import('node:http2')) => patchHttp2Connect(http2, toAdd));
  patchGrpcJs(toAdd);
}

/** http2 clients: the session's `request` adds the headers (grpc-js's requests are left to patchGrpcJs). */
function patchHttp2Connect(
  http2: typeof import('node:http2'),
  toAdd: (host: string | undefined) => Record<string, string>,
): void {
  const connect = http2.connect;
  http2.connect = function detourHttp2Connect(this: unknown, ...args: unknown[]) {
    const session = Reflect.apply(connect, this, args) as http2.ClientHttp2Session;
    const authority = args[0];
    let host: string | undefined;
    try {
      host = (authority instanceof URL ? authority : new URL(String(authority))).hostname.replace(
        /^\[|\]$/g,
        '',
      );
    } catch {}
    const request = session.request;
    session.request = function detourRequest(this: http2.ClientHttp2Session, headers, ...rest) {
      // grpc-js starts requests from its own callbacks, outside the caller's context: its calls
      // get their metadata in patchGrpcJs instead.
      const contentType = String((headers as http2.OutgoingHttpHeaders | undefined)?.['content-type'] ?? '');
      const extra = contentType.startsWith('application/grpc') ? {} : toAdd(host);
      if (Object.keys(extra).length === 0) return Reflect.apply(request, this, [headers, ...rest]);
      const merged: http2.OutgoingHttpHeaders = { ...(headers as http2.OutgoingHttpHeaders) };
      const present = new Set(Object.keys(merged).map((name) => name.toLowerCase()));
      for (const [name, value] of Object.entries(extra)) if (!present.has(name)) merged[name] = value;
      return Reflect.apply(request, this, [merged, ...rest]);
    } as typeof session.request;
    return session;
  } as typeof http2.connect;
}

const patched = Symbol.for('detour.layer.patched');

interface GrpcMetadata {
  get(key: string): unknown[];
  set(key: string, value: string): void;
  clone(): GrpcMetadata;
}
type Prototype = Record<string | symbol, unknown>;

/**
 * grpc-js: every Client call method first normalizes its arguments through
 * `checkOptionalUnaryResponseArguments` (unary, client streaming) or `checkMetadataAndOptions`
 * (server streaming, bidi), synchronously in the caller's context; the metadata they return gets
 * the headers (on a copy: apps reuse Metadata objects). The Client class is found, in whichever
 * copy of grpc-js the app loads, through the `module.require` tracing channel, which hands over
 * each required module's exports.
 */
function patchGrpcJs(toAdd: (host: string | undefined) => Record<string, string>): void {
  diagnosticsChannel.subscribe('tracing:module.require:end', (message) => {
    const exports = (message as { result?: Record<string, { prototype?: Prototype } | undefined> }).result;
    const client = exports?.Client?.prototype;
    if (!client || typeof client.checkMetadataAndOptions !== 'function' || client[patched]) return;
    client[patched] = true;
    for (const method of ['checkOptionalUnaryResponseArguments', 'checkMetadataAndOptions']) {
      const original = client[method] as (...args: unknown[]) => { metadata: GrpcMetadata };
      client[method] = function (this: { getChannel(): { getTarget(): string } }, ...args: unknown[]) {
        const checked = original.apply(this, args);
        const extra = Object.entries(toAdd(hostOfGrpcTarget(this.getChannel().getTarget())));
        const missing = extra.filter(([name]) => checked.metadata.get(name).length === 0);
        if (missing.length > 0) {
          checked.metadata = checked.metadata.clone();
          for (const [name, value] of missing) checked.metadata.set(name, value);
        }
        return checked;
      };
    }
  });
}

/** `dns:///payments:50051`, `dns:payments:50051`, `ipv4:10.0.0.1:50051`, `payments:50051` → the host. */
function hostOfGrpcTarget(target: string): string | undefined {
  let rest = target.replace(/^(dns|ipv4|ipv6):(\/\/[^/]*\/)?/, '');
  if (/^[a-z][a-z0-9+.-]*:/i.test(rest) && !/^[^:]+:\d+$/.test(rest)) return undefined; // unix:, xds:, ...
  rest = rest.split(',')[0] ?? '';
  const bracketed = /^\[([^\]]+)\]/.exec(rest);
  if (bracketed) return bracketed[1];
  return rest.includes(':') && rest.indexOf(':') === rest.lastIndexOf(':')
    ? rest.slice(0, rest.indexOf(':'))
    : rest;
}

interface UndiciRequest {
  origin: string;
  headers: string[] | string;
  addHeader(name: string, value: string): unknown;
}

function existingUndiciHeaders(headers: string[] | string): Set<string> {
  if (typeof headers === 'string') {
    return new Set(
      headers.split('\r\n').map((line) => line.slice(0, line.indexOf(':')).trim().toLowerCase()),
    );
  }
  const names = new Set<string>();
  for (let i = 0; i < headers.length; i += 2) names.add(String(headers[i]).toLowerCase());
  return names;
}
