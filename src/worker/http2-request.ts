/**
 * An HTTP/2 request as the pipeline and the handlers see it: its headers as
 * HTTP/1.1 would carry them. No pseudo-headers, `host` from :authority
 * (RFC 9113 §8.3.1), cookie crumbs joined into one field (§8.2.3), so header
 * limits, the IDS, routing and the proxy (which must never send a
 * pseudo-header upstream) read it as they read HTTP/1. The HTTP/2 server and
 * its session policy are http2.ts.
 *
 * Two kinds: a request whose HEADERS ended the stream (no body: nearly every
 * request a browser sends) is a BodylessHttp2Request, an object of our own
 * over the stream; any other (a body, CONNECT, Expect) is Node's
 * compatibility request (Http1ViewRequest), a Readable of the body.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Http2ServerRequest, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';

interface Http1View {
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
}

const VIEW = Symbol('http1View');

/**
 * The HTTP/1.1 view of an HTTP/2 request's header list. With `inPlace`, the
 * headers object is the stream's own field object, its pseudo-headers taken
 * out (for a request that has read what it needs of them: no copy per
 * request); else a copy.
 */
function http1View(fields: IncomingHttpHeaders, raw: readonly string[], inPlace: boolean): Http1View {
  const authority = fields[':authority'];
  const rawHeaders: string[] = [];
  if (typeof authority === 'string') rawHeaders.push('host', authority);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 0x3a /* ":" */ || name === 'cookie') continue;
    // A Host equal to :authority says nothing new; a different one is kept,
    // so header-limits refuses the request as naming two hosts (RFC 9113 §8.3.1).
    if (name === 'host' && typeof authority === 'string' && value.toLowerCase() === authority.toLowerCase()) continue;
    rawHeaders.push(name, value);
  }
  // Node has joined the crumbs with "; " (RFC 9113 §8.2.3): one field, as over HTTP/1.1.
  const cookie = fields.cookie;
  if (typeof cookie === 'string') rawHeaders.push('cookie', cookie);
  let headers = fields;
  if (inPlace) {
    for (const name of PSEUDO_HEADERS) delete headers[name];
  } else {
    headers = Object.create(null) as IncomingHttpHeaders;
    for (const name of Object.keys(fields)) if (name.charCodeAt(0) !== 0x3a) headers[name] = fields[name];
  }
  // :authority wins over a Host of its own (which, when different, the raw list keeps for header-limits).
  if (typeof authority === 'string') headers.host = authority;
  return { headers, rawHeaders };
}

/** The pseudo-headers a request may carry (RFC 9113 §8.3.1, RFC 8441 §4). */
const PSEUDO_HEADERS = [':method', ':scheme', ':authority', ':path', ':protocol'] as const;

/** An HTTP/2 request that shows its headers as HTTP/1.1 would carry them; :method, :path (url) stay as Node reads them. */
export class Http1ViewRequest extends Http2ServerRequest {
  [VIEW]?: Http1View;
}

const baseHeaders = Object.getOwnPropertyDescriptor(Http2ServerRequest.prototype, 'headers')!.get!;
const baseRawHeaders = Object.getOwnPropertyDescriptor(Http2ServerRequest.prototype, 'rawHeaders')!.get!;
const viewOf = (request: Http1ViewRequest): Http1View =>
  (request[VIEW] ??= http1View(baseHeaders.call(request) as IncomingHttpHeaders, baseRawHeaders.call(request) as string[], false));
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

const NO_TRAILERS: IncomingHttpHeaders = Object.freeze(Object.create(null) as IncomingHttpHeaders);
const NO_RAW_TRAILERS: readonly string[] = Object.freeze([]);

/**
 * An HTTP/2 request whose HEADERS frame ended the stream: what the pipeline
 * and the handlers read of an IncomingMessage, and nothing more. Node's
 * compatibility request is a Readable that hangs six listeners on the
 * stream and two on itself for a body that, here, never comes; this one
 * hangs none (the response's one 'close' listener emits this one's
 * 'close'). Its body is over before it is handed out: `complete`, no
 * 'data', no 'end' to wait for.
 */
export class BodylessHttp2Request extends EventEmitter {
  method: string;
  url: string;
  readonly complete = true;
  readonly aborted = false;
  readonly readable = false;
  readonly readableEnded = true;
  [VIEW]?: Http1View;

  constructor(
    readonly stream: ServerHttp2Stream,
    /** The stream's own fields, as Node decoded them: the headers (below) once read, without pseudo-headers. */
    readonly fields: IncomingHttpHeaders,
    private readonly rawFields: readonly string[],
    /** The connection's socket: read for its peer and TLS state only (HTTP/2 frames are the session's to write). */
    readonly socket: Socket,
  ) {
    super();
    this.method = fields[':method'] as string;
    this.url = fields[':path'] as string;
  }

  get headers(): IncomingHttpHeaders {
    return (this[VIEW] ??= http1View(this.fields, this.rawFields, true)).headers;
  }

  get rawHeaders(): string[] {
    return (this[VIEW] ??= http1View(this.fields, this.rawFields, true)).rawHeaders;
  }

  get httpVersion(): string {
    return '2.0';
  }

  get httpVersionMajor(): number {
    return 2;
  }

  get httpVersionMinor(): number {
    return 0;
  }

  get connection(): Socket {
    return this.socket;
  }

  get trailers(): IncomingHttpHeaders {
    return NO_TRAILERS;
  }

  get rawTrailers(): readonly string[] {
    return NO_RAW_TRAILERS;
  }

  /** Nothing to read: the request is complete. */
  resume(): this {
    return this;
  }

  pause(): this {
    return this;
  }

  setTimeout(ms: number, callback?: () => void): this {
    this.stream.setTimeout(ms, callback);
    return this;
  }
}

/** The stream of a request that came over HTTP/2, or null for HTTP/1. */
export function http2Stream(req: IncomingMessage): ServerHttp2Stream | null {
  if (req instanceof BodylessHttp2Request) return req.stream;
  return req instanceof Http2ServerRequest ? (req as Http2ServerRequest).stream : null;
}

/** An HTTP/2 request's own fields, pseudo-headers included (the HTTP/1.1 view shows none); a bodyless request has none left to ask for. */
function http2Fields(req: IncomingMessage): IncomingHttpHeaders {
  return req instanceof BodylessHttp2Request ? {} : (baseHeaders.call(req) as IncomingHttpHeaders);
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
  const protocol = http2Fields(req)[':protocol'];
  return typeof protocol === 'string' ? protocol : null;
}

/** The :path of an HTTP/2 request (an extended CONNECT has one, RFC 8441 §4), or null. */
export function http2Path(req: IncomingMessage): string | null {
  if (http2Stream(req) === null) return null;
  const path = http2Fields(req)[':path'];
  return typeof path === 'string' ? path : null;
}
