/**
 * An HTTP/2 request as the pipeline and the handlers see it: its headers as
 * HTTP/1.1 would carry them. No pseudo-headers, `host` from :authority
 * (RFC 9113 §8.3.1), cookie crumbs joined into one field (§8.2.3), so header
 * limits, the IDS, routing and the proxy (which must never send a
 * pseudo-header upstream) read it as they read HTTP/1. The HTTP/2 server and
 * its session policy are http2.ts.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Http2ServerRequest, type ServerHttp2Stream } from 'node:http2';

interface Http1View {
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
}

const VIEW = Symbol('http1View');

/** The HTTP/1.1 view of an HTTP/2 request's header list. */
function http1View(fields: IncomingHttpHeaders, raw: readonly string[]): Http1View {
  const headers: IncomingHttpHeaders = Object.create(null) as IncomingHttpHeaders;
  const rawHeaders: string[] = [];
  const authority = fields[':authority'];
  if (typeof authority === 'string') {
    headers.host = authority;
    rawHeaders.push('host', authority);
  }
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 0x3a /* ":" */ || name === 'cookie') continue;
    // A Host equal to :authority says nothing new; a different one is kept,
    // so header-limits refuses the request as naming two hosts (RFC 9113 §8.3.1).
    if (name === 'host' && typeof authority === 'string' && value.toLowerCase() === authority.toLowerCase()) continue;
    rawHeaders.push(name, value);
  }
  for (const name of Object.keys(fields)) {
    if (name.charCodeAt(0) === 0x3a || (name === 'host' && typeof authority === 'string')) continue;
    headers[name] = fields[name];
  }
  // Node has joined the crumbs with "; " (RFC 9113 §8.2.3): one field, as over HTTP/1.1.
  const cookie = fields.cookie;
  if (typeof cookie === 'string') rawHeaders.push('cookie', cookie);
  return { headers, rawHeaders };
}

/** An HTTP/2 request that shows its headers as HTTP/1.1 would carry them; :method, :path (url) stay as Node reads them. */
export class Http1ViewRequest extends Http2ServerRequest {
  [VIEW]?: Http1View;
}

const baseHeaders = Object.getOwnPropertyDescriptor(Http2ServerRequest.prototype, 'headers')!.get!;
const baseRawHeaders = Object.getOwnPropertyDescriptor(Http2ServerRequest.prototype, 'rawHeaders')!.get!;
const viewOf = (request: Http1ViewRequest): Http1View =>
  (request[VIEW] ??= http1View(baseHeaders.call(request) as IncomingHttpHeaders, baseRawHeaders.call(request) as string[]));
// Accessors on the prototype: Node's typing declares both as plain properties.
Object.defineProperties(Http1ViewRequest.prototype, {
  headers: {
    get(this: Http1ViewRequest) {
      return viewOf(this).headers;
    },
  },
  rawHeaders: {
    get(this: Http1ViewRequest) {
      return viewOf(this).rawHeaders;
    },
  },
});

/** The stream of a request that came over HTTP/2, or null for HTTP/1. */
export function http2Stream(req: IncomingMessage): ServerHttp2Stream | null {
  return req instanceof Http2ServerRequest ? (req as Http2ServerRequest).stream : null;
}

/**
 * An HTTP/2 request whose body comes without a Content-Length (RFC 9113
 * §8.1: DATA frames follow the HEADERS unless those ended the stream). Over
 * HTTP/1 only chunked framing does that.
 */
export function hasBodyWithoutLength(req: IncomingMessage): boolean {
  const stream = http2Stream(req);
  return stream !== null && req.headers['content-length'] === undefined && !stream.endAfterHeaders;
}

/**
 * The :protocol of an extended CONNECT (RFC 8441 §4: "websocket" for a
 * WebSocket over HTTP/2), or null for any other request. The HTTP/1.1 view
 * shows no pseudo-header, so this reads the stream's own.
 */
export function extendedConnectProtocol(req: IncomingMessage): string | null {
  if (req.method !== 'CONNECT' || http2Stream(req) === null) return null;
  const fields = baseHeaders.call(req) as IncomingHttpHeaders;
  const protocol = fields[':protocol'];
  return typeof protocol === 'string' ? protocol : null;
}

/** The :path of an HTTP/2 request (an extended CONNECT has one, RFC 8441 §4), or null. */
export function http2Path(req: IncomingMessage): string | null {
  if (http2Stream(req) === null) return null;
  const path = (baseHeaders.call(req) as IncomingHttpHeaders)[':path'];
  return typeof path === 'string' ? path : null;
}
