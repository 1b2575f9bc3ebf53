/**
 * Hop-by-hop header hygiene, shared by both directions of the proxy.
 *
 * RFC 9110 §7.6.1: an intermediary must not forward the Connection header
 * nor any field it names, and must remove the connection-specific fields
 * below. The list is RFC 9110's, plus the fields RFC 2616 §13.5.1 called
 * hop-by-hop (Keep-Alive, Proxy-Authenticate, Proxy-Authorization, TE,
 * Trailer(s), Transfer-Encoding, Upgrade), the non-standard
 * Proxy-Connection that old clients still send, and HTTP2-Settings
 * (RFC 7540 §3.2.1: it only means something on the hop that upgrades to h2c).
 * Transfer-Encoding is dropped because framing is per hop: undici and the
 * Node server re-frame each message (RFC 9112 §6.1).
 */
import type { IncomingHttpHeaders } from 'node:http';

/** Lower-case names that never cross the proxy, in either direction. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'trailers',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * The header names a Connection field lists (RFC 9110 §7.6.1), lower-cased,
 * or null when it lists none beyond the usual keep-alive / close options,
 * so the common request costs no allocation.
 */
export function connectionListedHeaders(connection: string | readonly string[] | undefined): ReadonlySet<string> | null {
  if (connection === undefined) return null;
  const joined = typeof connection === 'string' ? connection : connection.join(',');
  let listed: Set<string> | null = null;
  for (const token of joined.split(',')) {
    const name = token.trim().toLowerCase();
    // "close" and "keep-alive" are connection options, not header names;
    // Keep-Alive is on the hop-by-hop list anyway.
    if (name === '' || name === 'close' || name === 'keep-alive') continue;
    (listed ??= new Set()).add(name);
  }
  return listed;
}

/**
 * The end-to-end fields of an upstream response as a flat
 * [name, value, name, value, ...] list for `ServerResponse.writeHead`, which
 * keeps repeated fields (every Set-Cookie, RFC 6265 §3) as separate lines.
 */
export function endToEndResponseHeaders(headers: IncomingHttpHeaders): string[] {
  const listed = connectionListedHeaders(headers.connection);
  // RFC 9112 §6.3: when both are present Transfer-Encoding wins and
  // Content-Length must not be forwarded, or the next hop would frame the
  // re-chunked body by a length that no longer describes it.
  const dropContentLength = headers['transfer-encoding'] !== undefined;
  const out: string[] = [];
  for (const name of Object.keys(headers)) {
    if (HOP_BY_HOP_HEADERS.has(name)) continue;
    if (listed?.has(name)) continue;
    if (dropContentLength && name === 'content-length') continue;
    const value = headers[name];
    if (typeof value === 'string') {
      out.push(name, value);
    } else if (value !== undefined) {
      for (const item of value) out.push(name, item);
    }
  }
  return out;
}

/**
 * RFC 9110 §6.5.1: fields a trailer must not carry (framing, routing,
 * authentication, the response's controls), besides the hop-by-hop ones.
 */
const NOT_IN_TRAILERS: ReadonlySet<string> = new Set([
  'content-length',
  'content-encoding',
  'content-type',
  'content-range',
  'host',
  'authorization',
  'set-cookie',
  'cache-control',
  'expect',
  'max-forwards',
  'pragma',
  'range',
  'age',
  'expires',
  'date',
  'location',
  'retry-after',
  'vary',
  'warning',
]);

/**
 * An upstream's trailer fields that may go on (grpc-status, grpc-message,
 * ...), repeated ones joined (RFC 9110 §5.3): both the HTTP/1.1 and the
 * HTTP/2 response take an object.
 */
export function forwardableTrailers(trailers: IncomingHttpHeaders | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (trailers == null) return out;
  for (const name of Object.keys(trailers)) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower) || NOT_IN_TRAILERS.has(lower) || lower.startsWith(':')) continue;
    const value = trailers[name];
    if (typeof value === 'string') out[lower] = value;
    else if (Array.isArray(value)) out[lower] = value.join(', ');
  }
  return out;
}
