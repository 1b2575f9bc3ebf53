/**
 * HTTP/2 (RFC 9113) on the HTTPS listeners, chosen by ALPN (tls-front.ts);
 * plain-HTTP listeners speak HTTP/1.1 only (no h2c). A stream reaches the
 * same pipeline and handlers as an HTTP/1 request, through Node's
 * compatibility layer (Http2ServerRequest/Response), with two adaptations:
 *
 * - the request shows the pipeline HTTP/1.1 headers: no pseudo-headers,
 *   `host` from :authority (RFC 9113 §8.3.1), cookie crumbs joined into one
 *   field (§8.2.3), so header limits, the IDS, routing and the proxy (which
 *   must never send a pseudo-header upstream) read it as they read HTTP/1;
 * - the response adds the security headers like the HTTP/1 one and drops
 *   connection-specific fields (response-headers.ts).
 *
 * What nghttp2 itself refuses never reaches JavaScript: connection-specific
 * request fields, TE other than "trailers", upper-case names, malformed or
 * missing pseudo-headers, no :authority nor Host (RST_STREAM PROTOCOL_ERROR,
 * RFC 9113 §8.2.2, §8.3); a field whose value holds a control character is
 * dropped (Node asks nghttp2 to ignore invalid fields rather than reset); more
 * streams than max_concurrent_streams once SETTINGS is acknowledged (GOAWAY
 * PROTOCOL_ERROR, which the session reports as an error: audited by
 * server.ts); header lists past the hard caps below (RST_STREAM
 * ENHANCE_YOUR_CALM). Content-Length is checked against the DATA received.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import http2, { Http2ServerRequest, type ServerHttp2Stream } from 'node:http2';
import type { HeaderPolicy, LimitsSpec } from '../config/types.js';
import { secureHttp2ResponseClass } from './pipeline/response-headers.js';

/** RFC 9113 §6.5.2: a field counts its name and value octets plus 32. */
const FIELD_OVERHEAD_BYTES = 32;
/** :method, :scheme, :authority, :path. */
const REQUEST_PSEUDO_HEADERS = 4;

/**
 * Rapid reset (CVE-2023-44487): streams a connection may see end in
 * RST_STREAM in a burst — twice max_concurrent_streams, so a client may
 * cancel everything it has open twice in a row (a browser leaving a page) —
 * and how fast that allowance refills: nghttp2's own default rate.
 */
const RESET_BURST_PER_CONCURRENT_STREAM = 2;
const RESET_REFILL_PER_SECOND = 33;
/**
 * nghttp2's own limit on RST_STREAM frames received (Node's streamResetBurst),
 * set above ours. It sees every RST_STREAM, also those of streams Node
 * refused before JavaScript saw them (Node hands JavaScript at most
 * max_concurrent_streams new streams per read), so within one large read it
 * can act first: server.ts then audits the session's end as the rapid reset
 * it was.
 */
const NGHTTP2_RESET_BURST_FACTOR = 4;

export interface Http2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS (max_concurrent_streams). */
  readonly maxConcurrentStreams: number;
  /**
   * Hard caps nghttp2 applies while decoding a header block, before any
   * JavaScript sees the request (RST_STREAM ENHANCE_YOUR_CALM, unaudited):
   * twice what the header-limits stage admits, so every excess up to twice
   * the limit is answered 431 there, with an audit event. The byte cap is
   * also what SETTINGS_MAX_HEADER_LIST_SIZE advertises.
   */
  readonly maxHeaderListPairs: number;
  readonly maxHeaderListBytes: number;
  readonly resetBurst: number;
  readonly resetRefillPerSecond: number;
}

/** The HTTP/2 limits, derived from [security.limits]. */
export function http2Limits(limits: LimitsSpec): Http2Limits {
  const maxHeaderListPairs = 2 * limits.maxHeaders + REQUEST_PSEUDO_HEADERS;
  return {
    maxConcurrentStreams: limits.maxConcurrentStreams,
    maxHeaderListPairs,
    maxHeaderListBytes: 2 * limits.maxHeaderBytes + FIELD_OVERHEAD_BYTES * maxHeaderListPairs,
    resetBurst: RESET_BURST_PER_CONCURRENT_STREAM * limits.maxConcurrentStreams,
    resetRefillPerSecond: RESET_REFILL_PER_SECOND,
  };
}

interface Http1View {
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
}

const VIEW = Symbol('http1View');

/** The HTTP/1.1 view of an HTTP/2 request's header list (see the file comment). */
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
class Http1ViewRequest extends Http2ServerRequest {
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
 * The HTTP/2 server of an HTTPS listener. It never listens: tls-front.ts
 * hands it each TLS connection that negotiated "h2". Server push is off;
 * extended CONNECT (RFC 8441) is not offered.
 */
export function createHttp2Server(
  limits: Http2Limits,
  policy: HeaderPolicy,
  handler: (req: Http2ServerRequest, res: http2.Http2ServerResponse) => void,
): http2.Http2Server {
  return http2.createServer(
    {
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderListBytes,
        enablePush: false,
        enableConnectProtocol: false,
      },
      maxHeaderListPairs: limits.maxHeaderListPairs,
      streamResetBurst: NGHTTP2_RESET_BURST_FACTOR * limits.resetBurst,
      streamResetRate: limits.resetRefillPerSecond,
      Http2ServerRequest: Http1ViewRequest,
      Http2ServerResponse: secureHttp2ResponseClass(policy),
    },
    handler,
  );
}

/**
 * The rapid-reset allowance of one connection: a token bucket that every
 * stream ending in RST_STREAM (either side's) spends from.
 */
export class StreamResetBudget {
  #tokens: number;
  #refilledAt = performance.now();
  #lastResetAt = -Infinity;
  /** Streams reset so far on this connection (for the audit line). */
  resets = 0;

  constructor(private readonly limits: Pick<Http2Limits, 'resetBurst' | 'resetRefillPerSecond'>) {
    this.#tokens = limits.resetBurst;
  }

  /** One more stream was reset; false once the allowance is spent. */
  spend(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.limits.resetBurst, this.#tokens + ((now - this.#refilledAt) / 1000) * this.limits.resetRefillPerSecond);
    this.#refilledAt = now;
    this.#lastResetAt = now;
    this.resets += 1;
    this.#tokens -= 1;
    return this.#tokens >= 0;
  }

  /** Whether a stream was reset within the last `ms`. */
  resetWithinMs(ms: number): boolean {
    return performance.now() - this.#lastResetAt < ms;
  }
}
