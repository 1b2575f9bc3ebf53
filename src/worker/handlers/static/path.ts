/**
 * The request path of a static file: decoded exactly once, anything
 * ambiguous refused, and the containment rules every name the file system
 * gives back is held to (inside the root, not hidden). Pure: no file system.
 */
import * as path from 'node:path';

const FORBIDDEN_RAW = /[^\x21-\x7e]|[\\#]/;
const ENCODED_SEPARATOR = /%(?:2f|5c)/i;
const DECODED_CONTROL = /[\x00-\x1f\x7f-\x9f]/;
const DOUBLE_ENCODED = /%(?:2e|2f|5c|00)/i;
const ABSOLUTE_FORM = /^https?:\/\/[^/?#]*/i;

/** A request path that passed decoding: as sent (origin form), and decoded. */
export interface DecodedPath {
  readonly urlPath: string;
  readonly decoded: string;
}

/**
 * The path part of a request target (query already cut off), and its
 * decoded form, or the reason it is refused. Decoding happens here and only here.
 */
export function decodeRequestPath(rawPath: string): DecodedPath | string {
  let urlPath = rawPath;
  if (urlPath.charCodeAt(0) !== 0x2f) {
    // RFC 9112 §3.2.2: a server must accept the absolute form too.
    const authority = ABSOLUTE_FORM.exec(urlPath);
    if (authority === null) return 'not an origin-form path';
    urlPath = urlPath.slice(authority[0].length);
    if (urlPath === '') urlPath = '/';
    if (urlPath.charCodeAt(0) !== 0x2f) return 'not an origin-form path';
  }
  // RFC 3986 §2: a URI is printable US-ASCII; anything else was sent
  // unencoded by something that is not a browser. A backslash is a separator
  // on other systems and "#" starts a fragment that is never sent.
  if (FORBIDDEN_RAW.test(urlPath)) return 'raw control, non-ASCII, backslash or fragment';
  // An encoded separator would survive segment checks as part of one name.
  if (ENCODED_SEPARATOR.test(urlPath)) return 'encoded path separator';
  let decoded: string;
  try {
    // Throws on malformed escapes and on invalid UTF-8, including overlong
    // forms such as %c0%ae (CVE-2000-0884 was exactly this).
    decoded = decodeURIComponent(urlPath);
  } catch {
    return 'malformed percent-encoding or UTF-8';
  }
  if (DECODED_CONTROL.test(decoded)) return 'encoded control character';
  // Something that is still an escape after one decoding was encoded twice:
  // a later layer that decodes again must never see a "." or "/" appear.
  if (DOUBLE_ENCODED.test(decoded)) return 'double encoding';
  // RFC 3986 §5.2.4: clients remove dot segments before sending; one that
  // arrives was put there on purpose.
  for (const segment of decoded.split('/')) {
    if (segment === '.' || segment === '..') return 'dot segment';
  }
  return { urlPath, decoded };
}

/**
 * Whether any segment is hidden (starts with "."). RFC 8615 puts
 * well-known URIs (ACME challenges, security.txt) under /.well-known/, so
 * that one first segment is allowed.
 */
export function hasHiddenSegment(decodedPath: string): boolean {
  let at = decodedPath.indexOf('/.');
  while (at !== -1) {
    const wellKnown =
      at === 0 && decodedPath.startsWith('/.well-known') && (decodedPath.length === 12 || decodedPath.charCodeAt(12) === 0x2f);
    if (!wellKnown) return true;
    at = decodedPath.indexOf('/.', at + 1);
  }
  return false;
}

/** Whether `candidate` is `dir` or below it (both absolute, normalised). */
export function isInside(candidate: string, dir: string): boolean {
  if (candidate === dir) return true;
  const prefix = dir.endsWith(path.sep) ? dir : dir + path.sep;
  return candidate.startsWith(prefix);
}

/** Inside the real root, and not reached through a hidden name (a symlink to .env is still .env). */
export function isServable(realPath: string, rootReal: string): boolean {
  if (!isInside(realPath, rootReal)) return false;
  const relative = rootReal === path.sep ? realPath : realPath.slice(rootReal.length);
  return !hasHiddenSegment(relative);
}

/** A query echoed into Location: bytes outside printable ASCII are escaped. */
export function encodeQuery(query: string): string {
  return query.replace(/[^\x21-\x7e]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}
