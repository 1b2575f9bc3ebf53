/**
 * Header limits ([security.limits]) and the request-line checks Node's
 * parser leaves to us. The parser (llhttp, strict) has already enforced
 * max_header_size on the whole head (431, or 414 when the request line
 * alone overflowed: server.ts) and refused every control character but HTAB
 * in values (400, before any request exists: connection/parse-error.ts).
 * That refusal is not repeated here for HTTP/1, where it would scan every
 * byte of every value again on each request (a quarter of this stage's
 * cost): test/unit/parse-error.test.ts sends each of those bytes through
 * Node's parser with the worker's options, so a parser that grew lenient
 * fails a test instead of opening a gap. nghttp2 refuses only CR, LF and NUL
 * (RFC 9113 §8.2.1), so HTTP/2 values are scanned here.
 *
 * Gaps closed here (measured on Node's parser): a second Host header is
 * accepted; "HTTP/2.0" in text form is processed as a request; there is no
 * URL length limit; maxHeadersCount silently drops headers instead of
 * refusing the request on Node 20 (server.ts sets it one above max_headers,
 * so an over-long list shows up here as one header too many).
 *
 * HTTP/2 requests arrive through nghttp2, not llhttp, and the stage sees
 * them as HTTP/1.1 would carry them (http2-request.ts): :authority as Host, one
 * cookie field. Such a head is measured here, in the bytes its HTTP/1.1
 * form would take, so max_header_size means the same whatever the version;
 * nghttp2 has already refused lists past twice that.
 */
import type { IncomingMessage } from 'node:http';
import type { CompiledConfig } from '../../config/types.js';
import { HttpError } from '../errors.js';
import { http2Stream } from '../http2-request.js';
import type { Stage } from './stage.js';

/** Control characters other than HTAB (RFC 9110 §5.5: field values are VCHAR, SP, HTAB, obs-text). */
const CONTROL_CHARACTER = /[\x00-\x08\x0a-\x1f\x7f]/;

export function headerLimitsStage(config: CompiledConfig): Stage {
  const { maxHeaders, maxHeaderBytes, maxHeaderNameBytes, maxHeaderValueBytes, maxUrlBytes } = config.limits;
  return {
    name: 'header-limits',
    onRequest({ req }) {
      const http2 = http2Stream(req) !== null;
      // RFC 9112 §2.3: this server speaks HTTP/1.0 and 1.1 on this parser; 2.0 in text form is not HTTP/2.
      if (req.httpVersionMajor !== 1 && !http2) throw new HttpError('VERSION_NOT_SUPPORTED', `HTTP/${req.httpVersion}`);
      const url = req.url ?? '';
      if (url.length > maxUrlBytes) throw new HttpError('URL_TOO_LONG', `${url.length} bytes`);

      const raw = req.rawHeaders;
      if (raw.length / 2 > maxHeaders) throw new HttpError('TOO_MANY_HEADERS', `more than ${maxHeaders}`);
      // "METHOD target HTTP/1.1\r\n", each "name: value\r\n", the final "\r\n".
      let headBytes = http2 ? (req.method ?? '').length + url.length + 12 : 0;
      let hosts = 0;
      // HTTP/1 values were held to RFC 9110 §5.5 by the parser (above).
      const scanValues = http2;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!;
        const value = raw[i + 1]!;
        headBytes += name.length + value.length + 4;
        if (name.length > maxHeaderNameBytes) throw new HttpError('HEADER_NAME_TOO_LONG', `${name.length} bytes`);
        // Values arrive as latin1 strings: one character per byte.
        if (value.length > maxHeaderValueBytes) throw new HttpError('HEADER_VALUE_TOO_LONG', `${name}: ${value.length} bytes`);
        if (scanValues && CONTROL_CHARACTER.test(value)) throw new HttpError('BAD_HEADER_VALUE', `control character in ${name}`);
        if (isHost(name)) hosts += 1;
      }
      // HTTP/1 heads were measured by the parser as they arrived.
      if (http2 && headBytes + 2 > maxHeaderBytes)
        throw new HttpError('HEADERS_TOO_LARGE', `HTTP/2 header list of ${headBytes + 2} bytes in HTTP/1.1 form`);
      // RFC 9112 §3.2: HTTP/1.1 requires exactly one Host field; 400 otherwise.
      // RFC 9113 §8.3.1: an HTTP/2 request names its host in :authority (or Host), and not two different ones.
      if (hosts > 1) throw new HttpError('DUPLICATE_HOST', `${hosts} Host fields`);
      if (hosts === 0 && (http2 || req.httpVersionMinor === 1)) throw new HttpError('MISSING_HOST');
      const host = req.headers.host;
      if (host !== undefined && host !== lastGoodHost && !goodHost(host))
        throw new HttpError('BAD_HOST', `Host ${JSON.stringify(host.slice(0, 100))}`);
      if (!http2) useRequestTargetAuthority(req);
    },
  };
}

/**
 * RFC 9110 §7.2: Host = uri-host [ ":" port ], uri-host an IP-literal or a
 * reg-name (RFC 3986 §3.2.2). No userinfo ("user@host": RFC 9110 §4.2.4
 * forbids it in http(s) URIs, and a proxy that passes it on hands the
 * upstream a host it may read differently), no path, no space. RFC 9113
 * §8.3.1 holds :authority (shown here as Host) to the same.
 */
const HOST_FIELD = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]{0,5})?$/;
/** Whether a field name is Host, in any case (RFC 9110 §5.1), without lowercasing a copy of every name. */
function isHost(name: string): boolean {
  // c | 0x20 is the lower case of an ASCII letter, and only that letter's two cases give it.
  return (
    name.length === 4 &&
    (name.charCodeAt(0) | 0x20) === 0x68 /* h */ &&
    (name.charCodeAt(1) | 0x20) === 0x6f /* o */ &&
    (name.charCodeAt(2) | 0x20) === 0x73 /* s */ &&
    (name.charCodeAt(3) | 0x20) === 0x74 /* t */
  );
}

/**
 * The last Host that passed: a keep-alive client names the same host on
 * every request, and comparing two short strings is cheaper than the
 * pattern. One string per worker, whatever clients send.
 */
let lastGoodHost = '';
function goodHost(host: string): boolean {
  if (!HOST_FIELD.test(host)) return false;
  lastGoodHost = host;
  return true;
}
/** An http(s) request-target in absolute-form (RFC 9112 §3.2.2): scheme and authority, then the rest. */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)(.*)$/is;

/**
 * RFC 9112 §3.2.2: when the request-target is in absolute-form, the server
 * ignores Host and uses the target's authority. The request is rewritten
 * once, here, into what every later stage and handler reads: Host set to the
 * authority, the target in origin-form. Routing, the IDS, redirects and the
 * proxy (X-Forwarded-Host, a preserved Host) then cannot disagree about
 * which host was asked for.
 */
function useRequestTargetAuthority(req: IncomingMessage): void {
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 0x2f /* "/" */) return;
  const absolute = ABSOLUTE_FORM.exec(url);
  if (absolute === null) return;
  const authority = absolute[1]!;
  if (authority.includes('@')) throw new HttpError('BAD_HOST', 'userinfo in the request-target');
  if (authority === '' || !HOST_FIELD.test(authority)) throw new HttpError('BAD_HOST', 'request-target authority');
  const rest = absolute[2]!;
  req.headers.host = authority;
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
}
