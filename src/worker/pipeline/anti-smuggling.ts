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
const SINGLETON_FIELDS: readonly string[] = [
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
];

/**
 * The singleton fields by name length, each with a bit of its own: a
 * request's field names are matched without lowercasing a copy of each or
 * hashing it (a name of another length is none of them), and the fields
 * seen are tallied in one number.
 */
const SINGLETONS_BY_LENGTH: { readonly name: string; readonly bit: number }[][] = [];
for (const [i, name] of SINGLETON_FIELDS.entries()) (SINGLETONS_BY_LENGTH[name.length] ??= []).push({ name, bit: 1 << i });

/** The singleton bit of a field name in any case ("User-Agent"), or 0. */
function singletonBit(name: string): number {
  const candidates = SINGLETONS_BY_LENGTH[name.length];
  if (candidates === undefined) return 0;
  for (let i = 0; i < candidates.length; i++) if (sameLowerCase(name, candidates[i]!.name)) return candidates[i]!.bit;
  return 0;
}

/** Whether `name` is `lower` (lower-case letters and "-") in any case: ASCII case-insensitive, RFC 9110 §5.1. */
function sameLowerCase(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const c = name.charCodeAt(i);
    const l = lower.charCodeAt(i);
    if (c !== l && !(l >= 0x61 && l <= 0x7a && c === l - 0x20)) return false;
  }
  return true;
}

/**
 * Per ASCII character of the request-target: INVALID_IN_PATH when WHATWG
 * URL's path percent-encode set would have encoded it, beyond what llhttp
 * refuses, or it is the backslash; INVALID_IN_QUERY when its query set
 * would have. One pass over the target, no slice of it.
 */
const INVALID_IN_PATH = 1;
const INVALID_IN_QUERY = 2;
const TARGET_CHARACTER = new Uint8Array(128);
for (const c of '"<>') TARGET_CHARACTER[c.charCodeAt(0)] = INVALID_IN_PATH | INVALID_IN_QUERY;
for (const c of '\\`{}') TARGET_CHARACTER[c.charCodeAt(0)] = INVALID_IN_PATH;

/** Whether the target has a character a browser would have percent-encoded where it stands. */
function invalidTarget(url: string): boolean {
  let set = INVALID_IN_PATH;
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === 0x3f /* ? */) set = INVALID_IN_QUERY;
    else if (c < 128 && (TARGET_CHARACTER[c]! & set) !== 0) return true;
  }
  return false;
}

export function antiSmugglingStage(): Stage {
  return {
    name: 'anti-smuggling',
    onRequest({ req }) {
      if (invalidTarget(req.url ?? '')) throw new HttpError('BAD_TARGET', 'a character a browser would have percent-encoded');
      const raw = req.rawHeaders;
      let seen = 0;
      for (let i = 0; i < raw.length; i += 2) {
        const bit = singletonBit(raw[i]!);
        if ((seen & bit) !== 0) throw new HttpError('DUPLICATE_HEADER', `${raw[i]!.toLowerCase()} twice`);
        seen |= bit;
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
