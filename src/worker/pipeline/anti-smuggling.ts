/**
 * Anti-smuggling ([security.anti_smuggling]). Node's parser already refuses
 * Content-Length together with Transfer-Encoding, repeated or non-numeric
 * Content-Length, obfuscated Transfer-Encoding, obs-fold and bare CR (and is
 * never run with insecureHTTPParser). What it accepts and we do not:
 *
 * - any Transfer-Encoding other than exactly "chunked" ("gzip, chunked" is
 *   valid HTTP but no client needs it, and every proxy in a chain must agree
 *   on it): 501, RFC 9112 §6.1;
 * - Transfer-Encoding on an HTTP/1.0 request, which 1.0 does not define
 *   (RFC 9112 §6.1: the framing is faulty; close);
 * - the checks below repeated on the parsed headers, so a future parser
 *   leniency cannot reopen them silently.
 *
 * HTTP/2 bodies are framed by DATA frames, and nghttp2 checks a
 * Content-Length against them; Transfer-Encoding cannot appear there.
 *
 * - a field that may appear once sent twice (normalize_headers): Node keeps
 *   the first of Content-Type, Authorization, User-Agent and the others
 *   below and drops the rest without a word; another hop may keep the last.
 *   400, as for two Host fields;
 * - characters in the request-target that no browser sends raw
 *   (reject_invalid_characters): llhttp refuses controls, space and
 *   non-ASCII; quotes and angle brackets (percent-encoded by every browser,
 *   WHATWG URL's query set) anywhere, and backslash, backtick and braces in
 *   the path (its path set: a browser turns a backslash into "/") are
 *   refused here, as what the applications behind us would each read their
 *   own way.
 *
 * Whatever is forwarded upstream is re-serialised by the proxy, never the
 * raw bytes. max_request_per_connection is counted by server.ts (RFC 9112
 * §9.6). Every [security.anti_smuggling] switch is always on: config
 * compile refuses turning one off.
 */
import { HttpError } from '../errors.js';
import type { Stage } from './stage.js';

const DIGITS = /^[0-9]{1,15}$/;

/**
 * Fields a request carries at most once (RFC 9110: not lists) of which
 * Node's parser keeps the first and silently drops later copies (its
 * matchKnownFields); Host has its own check and code (header-limits.ts).
 */
const SINGLETON_FIELDS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'from',
  'if-modified-since',
  'if-unmodified-since',
  'max-forwards',
]);

/** In the path: what WHATWG URL's path percent-encode set would have encoded, beyond what llhttp refuses; and the backslash. */
const INVALID_IN_PATH = /["<>\\`{}]/;
/** In the query: its query percent-encode set. */
const INVALID_IN_QUERY = /["<>]/;

export function antiSmugglingStage(): Stage {
  return {
    name: 'anti-smuggling',
    onRequest({ req }) {
      const url = req.url ?? '';
      const queryAt = url.indexOf('?');
      const path = queryAt === -1 ? url : url.slice(0, queryAt);
      if (INVALID_IN_PATH.test(path) || (queryAt !== -1 && INVALID_IN_QUERY.test(url.slice(queryAt)))) {
        throw new HttpError('BAD_TARGET', 'a character a browser would have percent-encoded');
      }
      const raw = req.rawHeaders;
      let seen: Set<string> | null = null;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!.toLowerCase();
        if (!SINGLETON_FIELDS.has(name)) continue;
        seen ??= new Set();
        if (seen.has(name)) throw new HttpError('DUPLICATE_HEADER', `${name} twice`);
        seen.add(name);
      }
      const transferEncoding = req.headers['transfer-encoding'];
      const contentLength = req.headers['content-length'];
      if (transferEncoding !== undefined) {
        // RFC 9113 §8.2.2: HTTP/2 frames its own bodies (nghttp2 refuses the field; repeated here).
        if (req.httpVersionMajor !== 1) throw new HttpError('AMBIGUOUS_FRAMING', 'Transfer-Encoding in HTTP/2');
        if (req.httpVersionMinor === 0) throw new HttpError('AMBIGUOUS_FRAMING', 'Transfer-Encoding on HTTP/1.0');
        if (contentLength !== undefined) throw new HttpError('AMBIGUOUS_FRAMING', 'Content-Length with Transfer-Encoding');
        if (transferEncoding !== 'chunked') throw new HttpError('TRANSFER_ENCODING_NOT_SUPPORTED', transferEncoding.slice(0, 64));
      }
      if (contentLength !== undefined && !DIGITS.test(contentLength)) {
        throw new HttpError('AMBIGUOUS_FRAMING', 'Content-Length is not a decimal number');
      }
    },
  };
}
