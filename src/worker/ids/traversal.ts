/**
 * Path traversal: "../" and "..\" segments after every decoding an origin
 * server might apply (percent-encoding, repeated; overlong UTF-8 such as
 * %c0%ae, CVE-2000-0884; IIS %uXXXX; full-width and "best-fit" look-alike
 * slashes, CVE-2009-1535), well-known files a traversal aims at, stream
 * wrappers that read local files (php://filter, file://), and NUL bytes that
 * cut a path short in C-based file APIs ("../../etc/passwd%00.png").
 *
 * The decoder lives here because decoding *is* this check's subject; the
 * engine (index.ts) uses it for every location.
 */

const PERCENT = 0x25;
const PLUS = 0x2b;

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** The byte of "%XX" at i, or -1. */
function escapedByte(s: string, i: number): number {
  if (s.charCodeAt(i) !== PERCENT || i + 2 >= s.length) return -1;
  const high = hexValue(s.charCodeAt(i + 1));
  const low = hexValue(s.charCodeAt(i + 2));
  return high < 0 || low < 0 ? -1 : (high << 4) | low;
}

/**
 * UTF-8 that accepts overlong forms and decodes them to the code point they
 * spell (the behaviour that made "%c0%ae%c0%ae/" a traversal on servers that
 * checked before decoding). Malformed bytes become U+FFFD; never throws.
 */
function decodeUtf8Lenient(bytes: readonly number[]): string {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const b0 = bytes[i]!;
    let need = 0;
    let cp = 0;
    if (b0 < 0x80) {
      out += String.fromCharCode(b0);
      i += 1;
      continue;
    } else if (b0 >= 0xc0 && b0 < 0xe0) {
      need = 1;
      cp = b0 & 0x1f;
    } else if (b0 >= 0xe0 && b0 < 0xf0) {
      need = 2;
      cp = b0 & 0x0f;
    } else if (b0 >= 0xf0 && b0 < 0xf8) {
      need = 3;
      cp = b0 & 0x07;
    } else {
      out += '\ufffd';
      i += 1;
      continue;
    }
    let j = 1;
    for (; j <= need; j++) {
      const b = bytes[i + j];
      if (b === undefined || (b & 0xc0) !== 0x80) break;
      cp = (cp << 6) | (b & 0x3f);
    }
    if (j <= need || cp > 0x10ffff) {
      out += '\ufffd';
      i += 1;
      continue;
    }
    out += String.fromCodePoint(cp);
    i += need + 1;
  }
  return out;
}

/** One round of percent-decoding (and "+" as space when asked). Invalid escapes stay as they are. */
function decodeOnce(s: string, plusAsSpace: boolean): string {
  let out = '';
  let runStart = 0;
  const n = s.length;
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === PLUS && plusAsSpace) {
      out += `${s.slice(runStart, i)} `;
      i += 1;
      runStart = i;
      continue;
    }
    if (c !== PERCENT) {
      i += 1;
      continue;
    }
    // IIS's non-standard %uXXXX.
    const u = s.charCodeAt(i + 1) | 0x20;
    if (u === 0x75 && i + 5 < n) {
      const h1 = hexValue(s.charCodeAt(i + 2));
      const h2 = hexValue(s.charCodeAt(i + 3));
      const h3 = hexValue(s.charCodeAt(i + 4));
      const h4 = hexValue(s.charCodeAt(i + 5));
      if (h1 >= 0 && h2 >= 0 && h3 >= 0 && h4 >= 0) {
        out += s.slice(runStart, i) + String.fromCharCode((h1 << 12) | (h2 << 8) | (h3 << 4) | h4);
        i += 6;
        runStart = i;
        continue;
      }
    }
    if (escapedByte(s, i) < 0) {
      i += 1;
      continue;
    }
    out += s.slice(runStart, i);
    const bytes: number[] = [];
    for (let b = escapedByte(s, i); b >= 0; b = escapedByte(s, i)) {
      bytes.push(b);
      i += 3;
    }
    out += decodeUtf8Lenient(bytes);
    runStart = i;
  }
  return runStart === 0 ? s : out + s.slice(runStart);
}

/** Rounds of decoding: two catch double encoding (%252e), a third the rare triple. */
export const DECODE_ROUNDS = 3;

/**
 * Percent-decodes until the text stops changing, at most `rounds` times.
 * "+" means space only in the first round (application/x-www-form-urlencoded);
 * a "+" that was "%2B" stays a plus. Returns `s` itself when there is nothing
 * to decode, so the common case allocates nothing.
 */
export function decodePercent(s: string, plusAsSpace: boolean, rounds = DECODE_ROUNDS): string {
  let current = plusAsSpace && s.indexOf('+') !== -1 ? s.replaceAll('+', ' ') : s;
  for (let round = 0; round < rounds && current.indexOf('%') !== -1; round++) {
    const next = decodeRound(current);
    if (next === current) break;
    current = next;
  }
  return current;
}

/**
 * One round: the engine's decodeURIComponent when every escape is an ASCII
 * byte (the common case, fast, and sure not to throw), the lenient decoder
 * otherwise (UTF-8 sequences, overlong forms, %uXXXX, stray "%"). Deciding
 * up front avoids exceptions, which cost microseconds each: a URL made of
 * broken escapes must not be a way to burn CPU.
 */
function decodeRound(s: string): string {
  return NOT_PLAIN_ESCAPE.test(s) ? decodeOnce(s, false) : decodeURIComponent(s);
}

/** A "%" that does not start an escape of an ASCII byte (%00-%7F). */
const NOT_PLAIN_ESCAPE = /%(?![0-7][0-9a-f])/i;

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;

/**
 * Characters some stacks fold into "." "/" "\" (NFKC normalisation, IIS
 * best-fit mapping): full-width ．／＼, DIVISION SLASH ∕, SET MINUS ∖, ONE
 * DOT LEADER ․.
 */
const LOOKALIKES = /[\u2024\u2215\u2216\uff0e\uff0f\uff3c]/g;
/** NUL or a look-alike: both rare, so one search decides whether to look closer. */
const UNUSUAL_TEST = /[\0\u2024\u2215\u2216\uff0e\uff0f\uff3c]/;
const LOOKALIKE_MAP: Readonly<Record<string, string>> = {
  '\u2024': '.',
  '\u2215': '/',
  '\u2216': '\\',
  '\uff0e': '.',
  '\uff0f': '/',
  '\uff3c': '\\',
};

function isWordish(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || c === 0x5f || c === 0x2d || c >= 0x80;
}

/**
 * A run of two or more dots that forms a whole path segment: "/../",
 * "..\", a leading "../", "/.." at the end, "....//" (a filter that strips
 * "../" once leaves "../"), Tomcat's "..;/" and "..%00". A dotted file name
 * ("report..final.pdf") is not a segment of dots and does not count.
 */
function hasDotSegment(s: string): boolean {
  const n = s.length;
  for (let i = s.indexOf('..'); i !== -1; ) {
    let start = i;
    while (start > 0 && s.charCodeAt(start - 1) === DOT) start -= 1;
    let end = i + 2;
    while (end < n && s.charCodeAt(end) === DOT) end += 1;
    const before = start === 0 ? -1 : s.charCodeAt(start - 1);
    const after = end === n ? -1 : s.charCodeAt(end);
    const beforeIsSeparator = before === -1 || before === SLASH || before === BACKSLASH;
    if (after === SLASH || after === BACKSLASH || after === 0 || after === 0x3b /* ; */) {
      // "x=../a", "'../a", " ../a" as well as "/../a"; not "a../b".
      if (beforeIsSeparator || !isWordish(before)) return true;
    } else if (after === -1 && beforeIsSeparator && end - start === 2) {
      return true; // "/a/.." or a value that is only ".." (an ellipsis "..." is not)
    }
    i = end < n ? s.indexOf('..', end) : -1;
  }
  return false;
}

/**
 * Files and wrappers that only a traversal or a local-file inclusion asks
 * for. Each alternative is a fixed word sequence (no nested quantifiers),
 * anchored on a separator and ended by a separator or a non-word, so
 * "/docs/etc/hosts-file" or "myfile://" do not count. Every alternative
 * begins with a character that is rare in text ("/", "\", ".", ":") or at
 * the start, with the words before it in a lookbehind: the regexp engine
 * then skips ahead to those characters, which makes the search an order of
 * magnitude faster on prose than one led by letters or a class of separators.
 */
const PATH_TARGETS = [
  String.raw`etc[\\/]+(?:passwd|shadow|group|gshadow|hosts|issue|motd|sudoers|crontab|fstab|hostname|master\.passwd)(?![\w-])`,
  String.raw`etc[\\/]+(?:security|ssh|mysql|httpd|apache2?|nginx|php[\d.]*)[\\/]`,
  String.raw`proc[\\/]+(?:self|thread-self|\d+)(?:[\\/]|$)`,
  String.raw`proc[\\/]+(?:version|cmdline|environ|mounts|cpuinfo)(?![\w-])`,
  String.raw`windows[\\/]+(?:win|system)\.ini(?![\w-])`,
  String.raw`windows[\\/]+(?:system32|repair|panther|debug)(?:[\\/]|$)`,
  String.raw`winnt[\\/]`,
  String.raw`inetpub[\\/]+(?:wwwroot|logs)`,
  String.raw`\.ssh[\\/]+(?:id_\w+|authorized_keys|known_hosts)(?![\w-])`,
  String.raw`var[\\/]+log[\\/]+(?:apache2?|httpd|nginx)(?:[\\/]|$)`,
  String.raw`var[\\/]+log[\\/]+(?:auth\.log|secure|messages|syslog|mail\.log)(?![\w-])`,
  String.raw`web-inf[\\/]+(?:web\.xml|classes|lib)`,
  String.raw`(?:httpd|apache2?|nginx|my|php)\.(?:conf|cnf|ini)(?![\w-])`,
].join('|');
const BEFORE_NAME = String.raw`(?:^|[\\/=:\s'"\x60>(,;])`;
const SENSITIVE_TARGET = new RegExp(
  [
    String.raw`[\\/](?:${PATH_TARGETS})`,
    `^(?:${PATH_TARGETS})`,
    String.raw`\.(?<=${BEFORE_NAME}(?:boot|win|system)\.)ini(?![\w-])`,
    String.raw`\.(?<=${BEFORE_NAME}\.)(?:htpasswd|htaccess|bash_history|mysql_history|psql_history)(?![\w-])`,
    String.raw`:(?<=(?:^|[^a-z0-9])(?:php|phar|expect|zip|glob|data|file):)[\\/]{2}`,
  ].join('|'),
  'i',
);

/**
 * True when `decoded` (already percent-decoded) walks out of a directory or
 * names a file only an attack asks for. `nulIsAttack` is false for whole
 * request bodies, which may legitimately be binary.
 */
export function detectTraversal(decoded: string, nulIsAttack = true): boolean {
  let s = decoded;
  if (UNUSUAL_TEST.test(s)) {
    if (nulIsAttack && s.indexOf('\0') !== -1) return true;
    s = s.replace(LOOKALIKES, (c) => LOOKALIKE_MAP[c] ?? c);
  }
  if (s.indexOf('..') !== -1 && hasDotSegment(s)) return true;
  // "/etc/./passwd" is "/etc/passwd".
  if (s.indexOf('/.') !== -1 || s.indexOf('\\.') !== -1) s = s.replace(/([\\/])(?:\.[\\/])+/g, '$1');
  return SENSITIVE_TARGET.test(s);
}
