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
 * Whatever is forwarded upstream is re-serialised by the proxy, never the
 * raw bytes. max_request_per_connection is server.maxRequestsPerSocket.
 */
import { HttpError } from '../errors.js';
import type { Stage } from './stage.js';

const DIGITS = /^[0-9]{1,15}$/;

export function antiSmugglingStage(): Stage {
  return {
    name: 'anti-smuggling',
    onRequest({ req }) {
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
