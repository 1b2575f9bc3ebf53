/**
 * Request headers: every header's value, and a name that is more than a
 * plain token, gets the checks a query parameter gets. Applications copy
 * headers into SQL (analytics, audit tables, "X-Tenant" lookups), into
 * HTML (admin pages showing User-Agent and Referer), into logs a shell or
 * a log viewer reads, and into file paths; an attacker chooses which
 * header, so no list of "interesting" ones is complete.
 *
 * Headers whose ordinary values look odd are read by their grammar, so
 * that each part is judged in the context it is used in, not the syntax
 * around it:
 * - Cookie: each cookie name and value on its own, percent-decoded;
 * - Referer, Origin: an absolute URL, inspected as its host, path and
 *   parameters (RFC 9110 §10.1.3, RFC 6454 §7);
 * - X-Original-URL, X-Rewrite-URL: taken as the request path by frameworks
 *   (Symfony, IIS URL Rewrite), so inspected as a request-target;
 * - Authorization, Proxy-Authorization (RFC 9110 §11.4): Basic credentials
 *   are decoded and the user-id inspected (applications look it up in SQL
 *   or LDAP: "admin'--" is the classic login bypass). The password is
 *   deliberately not inspected: it is a secret chosen to contain any
 *   character, applications compare a hash of it rather than paste it into
 *   a query, and a strong password ("k7'#Lp2") reads as a quote and a
 *   comment. Other schemes: token68 credentials (Bearer, Negotiate) are a
 *   base64 alphabet with nothing to inspect but a traversal; auth-params
 *   (Digest) each value on its own. The value is never logged: an audit
 *   event names only the header;
 * - Content-Type (RFC 9110 §8.3): the media type, and each parameter
 *   value unquoted (a multipart boundary is dashes and letters);
 * - If-None-Match, If-Match (RFC 9110 §8.8.3): each entity-tag's opaque
 *   content, without the quotes and "W/" around it.
 * Everything else, User-Agent and Accept included, is one value,
 * percent-decoded as an application reading it as data would.
 */
import type { Findings } from './match.js';
import { decodePercent } from './traversal.js';
import { boundRaw, inspectTarget, inspectValue, isInert, originForm } from './values.js';

/** "a=1; b=2": each value (and a name that is not a plain token), percent-decoded. */
function inspectCookies(cookie: string, location: string, found: Findings): void {
  let from = 0;
  while (from < cookie.length) {
    let end = cookie.indexOf(';', from);
    if (end === -1) end = cookie.length;
    const eq = cookie.indexOf('=', from);
    const nameEnd = eq === -1 || eq > end ? end : eq;
    const name = cookie.slice(from, nameEnd).trim();
    if (name.length > 0 && !isInert(name)) inspectValue(decodePercent(boundRaw(name), false), location, 'value', found);
    if (nameEnd < end) {
      let value = cookie.slice(nameEnd + 1, end).trim();
      if (value.length >= 2 && value.charCodeAt(0) === 0x22 && value.charCodeAt(value.length - 1) === 0x22) value = value.slice(1, -1);
      inspectValue(decodePercent(boundRaw(value), false), location, 'value', found);
    }
    from = end + 1;
  }
}

/** An absolute URL (Referer, Origin): its host, path and parameters, each in its context; anything else as one value. */
function inspectUrl(value: string, location: string, found: Findings): void {
  const scheme = /^https?:\/\//i.exec(value);
  if (scheme === null) {
    inspectValue(decodePercent(boundRaw(value), false), location, 'value', found);
    return;
  }
  const hash = value.indexOf('#');
  const rest = value.slice(scheme[0].length, hash === -1 ? value.length : hash);
  const slash = rest.search(/[/?]/);
  const host = slash === -1 ? rest : rest.slice(0, slash);
  if (!isInert(host.replace(/[:@[\]]/g, ''))) inspectValue(decodePercent(boundRaw(host), false), location, 'value', found);
  if (slash === -1) return;
  inspectTarget(rest.charCodeAt(slash) === 0x3f ? `/${rest.slice(slash)}` : rest.slice(slash), location, location, found);
  // The fragment is the page's own (client-side routers read it as a path or parameters).
  if (hash !== -1 && hash + 1 < value.length) inspectValue(decodePercent(boundRaw(value.slice(hash + 1)), true), location, 'value', found);
}

/** RFC 9110 §11.2 token68: base64 and base64url credentials. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** "name=value, name=\"quoted\"": each value unquoted (RFC 9110 §5.6.6, §5.6.4). */
function inspectParams(params: string, separator: number, location: string, found: Findings): void {
  let i = 0;
  const n = params.length;
  while (i < n) {
    const eq = params.indexOf('=', i);
    if (eq === -1) {
      const rest = params.slice(i).trim();
      if (rest.length > 0 && !isInert(rest)) inspectValue(decodePercent(boundRaw(rest), false), location, 'value', found);
      return;
    }
    const name = params.slice(i, eq).trim();
    if (name.length > 0 && !isInert(name)) inspectValue(name, location, 'value', found);
    let j = eq + 1;
    while (j < n && (params.charCodeAt(j) === 0x20 || params.charCodeAt(j) === 0x09)) j++;
    let value: string;
    if (params.charCodeAt(j) === 0x22) {
      // quoted-string: a backslash escapes the next character.
      let out = '';
      let k = j + 1;
      for (; k < n && params.charCodeAt(k) !== 0x22; k++) {
        if (params.charCodeAt(k) === 0x5c && k + 1 < n) k++;
        out += params[k];
      }
      value = out;
      const next = params.indexOf(String.fromCharCode(separator), k);
      i = next === -1 ? n : next + 1;
    } else {
      const next = params.indexOf(String.fromCharCode(separator), j);
      const end = next === -1 ? n : next;
      value = params.slice(j, end).trim();
      i = end + 1;
    }
    if (value.length > 0) inspectValue(decodePercent(boundRaw(value), false), location, 'value', found);
  }
}

/** Basic: the decoded user-id only; token68: a traversal at most; auth-params: each value. See the file comment. */
function inspectCredentials(value: string, location: string, found: Findings): void {
  const trimmed = value.trim();
  const space = trimmed.search(/[ \t]/);
  const scheme = space === -1 ? trimmed : trimmed.slice(0, space);
  const credentials = space === -1 ? '' : trimmed.slice(space + 1).trim();
  if (!isInert(scheme)) inspectValue(scheme, location, 'value', found);
  if (credentials.length === 0) return;
  if (scheme.toLowerCase() === 'basic' && TOKEN68.test(credentials)) {
    const decoded = Buffer.from(credentials, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    inspectValue(colon === -1 ? decoded : decoded.slice(0, colon), location, 'value', found);
    return;
  }
  if (TOKEN68.test(credentials)) {
    inspectValue(credentials, location, 'value', found);
    return;
  }
  inspectParams(credentials, 0x2c, location, found);
}

/** type/subtype; param=value: the media type unless it is plain tokens, then each parameter. */
function inspectMediaType(value: string, location: string, found: Findings): void {
  const semicolon = value.indexOf(';');
  const type = (semicolon === -1 ? value : value.slice(0, semicolon)).trim();
  if (!/^[\w!#$&^.+-]+\/[\w!#$&^.+-]+$/.test(type)) inspectValue(decodePercent(boundRaw(type), false), location, 'value', found);
  if (semicolon !== -1) inspectParams(value.slice(semicolon + 1), 0x3b, location, found);
}

/** A list of entity-tags ("xyzzy", W/"r2d2", *): each opaque content; a value of another shape as one value. */
function inspectEntityTags(value: string, location: string, found: Findings): void {
  const trimmed = value.trim();
  if (trimmed === '*') return;
  const tags = /^(?:\s*(?:W\/)?"[^"]*"\s*(?:,|$))+$/.test(trimmed);
  if (!tags) {
    inspectValue(decodePercent(boundRaw(trimmed), false), location, 'value', found);
    return;
  }
  for (const match of trimmed.matchAll(/"([^"]*)"/g)) {
    if (match[1]!.length > 0) inspectValue(match[1]!, location, 'value', found);
  }
}

/** One header, by its grammar (see the file comment). `name` is lower-case, as Node hands it over. */
export function inspectHeader(name: string, value: string, found: Findings): void {
  const location = `header:${name}`;
  if (!isInert(name)) inspectValue(name, location, 'value', found);
  switch (name) {
    case 'cookie':
      inspectCookies(value, location, found);
      return;
    case 'referer':
    case 'origin':
      inspectUrl(value, location, found);
      return;
    case 'x-original-url':
    case 'x-rewrite-url':
      inspectTarget(originForm(value), location, location, found);
      return;
    case 'authorization':
    case 'proxy-authorization':
      inspectCredentials(value, location, found);
      return;
    case 'content-type':
      inspectMediaType(value, location, found);
      return;
    case 'if-none-match':
    case 'if-match':
      inspectEntityTags(value, location, found);
      return;
    default:
      inspectValue(decodePercent(boundRaw(value), false), location, 'value', found);
  }
}

/**
 * Clean header values remembered per engine: real traffic repeats a few
 * User-Agent, Accept, Cookie and Referer values, so most requests skip
 * their inspection. Only built-in results are cached (custom rules always
 * run), only values up to CACHE_KEY_CHARS long, of at most CACHE_NAMES
 * header names (the first seen; a client inventing names does not push
 * out the ones browsers send), and everything is forgotten when
 * CACHE_ENTRIES values are held (about 2 MB at most): a client sending
 * fresh names or values costs the engine work, never memory.
 */
const CACHE_ENTRIES = 2048;
const CACHE_NAMES = 128;
const CACHE_KEY_CHARS = 1024;

/** One header name's clean values, and the one it had last. */
interface CleanValues {
  readonly values: Set<string>;
  /**
   * Every value arrives as a new string, and a Set must hash it character
   * by character to look it up (about 130 ns for a User-Agent), while
   * comparing it with one string costs a few: a browser sends the same
   * values on every request of its connection, and Host and Accept repeat
   * across clients.
   */
  last: string;
}

export class CleanHeaders {
  private readonly byName = new Map<string, CleanValues>();
  private entries = 0;

  has(name: string, value: string): boolean {
    const clean = this.byName.get(name);
    if (clean === undefined) return false;
    if (clean.last === value) return true;
    if (!clean.values.has(value)) return false;
    clean.last = value;
    return true;
  }

  add(name: string, value: string): void {
    if (value.length > CACHE_KEY_CHARS) return;
    let clean = this.byName.get(name);
    // A client inventing header names does not push out the names every browser sends.
    if (clean === undefined && this.byName.size >= CACHE_NAMES) return;
    if (this.entries >= CACHE_ENTRIES) {
      this.byName.clear();
      this.entries = 0;
      clean = undefined;
    }
    if (clean === undefined) {
      clean = { values: new Set(), last: value };
      this.byName.set(name, clean);
    }
    clean.values.add(value);
    clean.last = value;
    this.entries++;
  }
}
