/**
 * One value at a time: the character classes that send a value only to the
 * detectors whose rules could apply, and the readers of request-targets,
 * "a=1&b=2" parameter lists and JSON string literals that hand each
 * decoded value to them.
 *
 * Bounds: each value is inspected on its first MAX_VALUE_CHARS characters
 * (an attack hidden after 8 KiB of padding in one value is missed; the URL
 * and header sizes are bounded earlier by the header-limits stage).
 * Detectors use no nested quantifiers on input, so work is linear in the
 * bounded size.
 */
import { detectCommand } from './command.js';
import { COMMAND, type Findings, SQLI, TRAVERSAL, XSS } from './match.js';
import { detectSqli, detectSqliInPath } from './sqli.js';
import { decodePercent, detectTraversal } from './traversal.js';
import { detectXss } from './xss.js';

/** Characters of one value inspected; longer values are inspected on this prefix. */
export const MAX_VALUE_CHARS = 8192;
/**
 * The module's own copies of what it exports or imports: V8 reads an
 * exported or imported binding through a checked cell on every use, and
 * these are read per value and per character.
 */
const VALUE_CHARS = MAX_VALUE_CHARS;
const RULE_SQLI = SQLI;
const RULE_XSS = XSS;
const RULE_TRAVERSAL = TRAVERSAL;
const RULE_COMMAND = COMMAND;

/** How a value is read: as a request path, as one parameter, or as a whole body text. */
export type Shape = 'path' | 'value' | 'text';

/**
 * Character classes of a value, found in one pass and used to send it only
 * to the detectors whose rules could apply: each detector's rules all need
 * one of the characters in its *_NEEDS set (a traversal needs a dot, a
 * slash, a colon or NUL; markup needs "<", "&", a quote, "=", ...). Most
 * values (ids, words, numbers, "running shoes for women") need none.
 */
const LETTER = 1 << 0;
const DIGIT = 1 << 1;
const SPACE = 1 << 2;
const DOT = 1 << 3;
const SLASH = 1 << 4;
const BACKSLASH = 1 << 5;
const COLON = 1 << 6;
const QUOTE = 1 << 7; // ' "
const BACKTICK = 1 << 8;
const LT = 1 << 9;
const AMP = 1 << 10;
const EQUALS = 1 << 11;
const SEMICOLON = 1 << 12;
const PIPE = 1 << 13;
const DOLLAR = 1 << 14;
const PAREN = 1 << 15;
const CONTROL = 1 << 16; // below 0x20 except tab: NUL, CR, LF
const NON_ASCII = 1 << 17;
const DASH = 1 << 18;
const UNDERSCORE = 1 << 19;
const TILDE = 1 << 20;
const OTHER = 1 << 21; // the rest of the punctuation: # * @ + , % ! ? ^ > ) [ ] { }
const ALL_CLASSES = (1 << 22) - 1;

const CLASS_OF = new Int32Array(128).fill(OTHER);
for (let c = 0; c < 0x20; c++) CLASS_OF[c] = CONTROL;
for (let c = 0x30; c <= 0x39; c++) CLASS_OF[c] = DIGIT;
for (let c = 0x41; c <= 0x5a; c++) CLASS_OF[c] = LETTER;
for (let c = 0x61; c <= 0x7a; c++) CLASS_OF[c] = LETTER;
for (const [chars, bit] of [
  [' \t', SPACE],
  ['.', DOT],
  ['/', SLASH],
  ['\\', BACKSLASH],
  [':', COLON],
  ['\'"', QUOTE],
  ['`', BACKTICK],
  ['<', LT],
  ['&', AMP],
  ['=', EQUALS],
  [';', SEMICOLON],
  ['|', PIPE],
  ['$', DOLLAR],
  ['(', PAREN],
  ['-', DASH],
  ['_', UNDERSCORE],
  ['~', TILDE],
] as const) {
  for (const c of chars) CLASS_OF[c.charCodeAt(0)] = bit;
}

const TRAVERSAL_NEEDS = DOT | SLASH | BACKSLASH | COLON | CONTROL | NON_ASCII;
const XSS_NEEDS = LT | AMP | BACKSLASH | COLON | EQUALS | QUOTE | BACKTICK | OTHER; // OTHER: "{{"
/** Plus a space with a dash ("nc -e"), checked where it is used. */
const COMMAND_NEEDS = SEMICOLON | PIPE | AMP | BACKTICK | DOLLAR | CONTROL | PAREN | LT | SLASH;
/**
 * SQL needs a digit or punctuation besides "- . _ ~ &": a value of words and
 * spaces alone injects nothing ("&&" is a logic operator, but "a && b" alone
 * is no rule either; "Rock & Roll" is prose).
 */
const SQLI_NEEDS = ALL_CLASSES & ~(LETTER | SPACE | NON_ASCII | DOT | DASH | UNDERSCORE | TILDE | AMP);
const UNION_WORD = /union/i;
/** "union select null": the shortest UNION SELECT of words alone. */
const MIN_WORDS_UNION = 17;
/** A value of only these (an id, a slug, a token, "index.html") needs only the traversal check. */
const INERT = LETTER | DIGIT | DASH | UNDERSCORE | DOT;
/** In a path, "/" and "~" too ("/~user/docs/index.html"). */
const INERT_IN_PATH = INERT | SLASH | TILDE;
/** Longer values are not classified: each detector's own filters are faster on them. */
const MAX_CLASSIFIED_CHARS = 256;

function charClasses(s: string): number {
  if (s.length > MAX_CLASSIFIED_CHARS) return ALL_CLASSES;
  const classOf = CLASS_OF;
  let classes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    classes |= c < 128 ? classOf[c]! : NON_ASCII;
  }
  return classes;
}

export function isInert(s: string): boolean {
  return (charClasses(s) & ~INERT) === 0;
}

/** Runs the built-in detectors that can apply to one decoded value. */
export function inspectValue(raw: string, location: string, shape: Shape, found: Findings): void {
  if (raw.length === 0) return;
  const value = raw.length > VALUE_CHARS ? raw.slice(0, VALUE_CHARS) : raw;
  inspectClassified(value, charClasses(value), location, shape, found);
}

/** inspectValue for a value whose character classes are already known. */
function inspectClassified(value: string, classes: number, location: string, shape: Shape, found: Findings): void {
  if ((classes & ~(shape === 'path' ? INERT_IN_PATH : INERT)) === 0) {
    // Without a separator, only a dot can start a traversal ("..") or a target ("win.ini").
    if ((classes & (DOT | SLASH)) !== 0 && !found.has(RULE_TRAVERSAL.name, location) && detectTraversal(value, true))
      found.addBuiltin(RULE_TRAVERSAL, location);
    // "/dev/tcp/10.0.0.1/4444" is all inert characters, and a reverse shell.
    if ((classes & SLASH) !== 0 && !found.has(RULE_COMMAND.name, location) && detectCommand(value))
      found.addBuiltin(RULE_COMMAND, location);
    return;
  }
  if ((classes & TRAVERSAL_NEEDS) !== 0 && !found.has(RULE_TRAVERSAL.name, location) && detectTraversal(value, shape !== 'text'))
    found.addBuiltin(RULE_TRAVERSAL, location);
  // Words alone inject only as UNION SELECT ("x union select null"): other rules need a digit or punctuation.
  const sqlMayApply =
    (classes & SQLI_NEEDS) !== 0 || ((classes & SPACE) !== 0 && value.length >= MIN_WORDS_UNION && UNION_WORD.test(value));
  if (sqlMayApply && !found.has(RULE_SQLI.name, location) && (shape === 'path' ? detectSqliInPath(value) : detectSqli(value)))
    found.addBuiltin(RULE_SQLI, location);
  if ((classes & XSS_NEEDS) !== 0 && !found.has(RULE_XSS.name, location) && detectXss(value)) found.addBuiltin(RULE_XSS, location);
  const commandMayApply = (classes & COMMAND_NEEDS) !== 0 || ((classes & SPACE) !== 0 && (classes & DASH) !== 0); // "nc -e", "sh -i"
  if (commandMayApply && !found.has(RULE_COMMAND.name, location) && detectCommand(value)) found.addBuiltin(RULE_COMMAND, location);
}

/** Raw text before decoding is cut at three times the value bound (every character may be "%XX"). */
export function boundRaw(s: string): string {
  return s.length > VALUE_CHARS * 3 ? s.slice(0, VALUE_CHARS * 3) : s;
}

/** Each name and value of "a=1&b=2", decoded (with "+" as space) and inspected on its own. */
export function inspectParameters(query: string, location: string, found: Findings): void {
  let from = 0;
  while (from < query.length) {
    let end = query.indexOf('&', from);
    if (end === -1) end = query.length;
    if (end > from) {
      const eq = query.indexOf('=', from);
      if (eq === -1 || eq > end) {
        inspectValue(decodePercent(boundRaw(query.slice(from, end)), true), location, 'value', found);
      } else {
        if (eq > from) inspectValue(decodePercent(boundRaw(query.slice(from, eq)), true), location, 'value', found);
        if (end > eq + 1) inspectValue(decodePercent(boundRaw(query.slice(eq + 1, end)), true), location, 'value', found);
      }
    }
    from = end + 1;
  }
}

/** The path part of a request-target in absolute form ("http://h/p?q" -> "/p?q"); origin form as is. */
export function originForm(target: string): string {
  if (target.charCodeAt(0) === 0x2f) return target;
  const scheme = target.indexOf('://');
  if (scheme === -1 || scheme > 16) return target; // "*", authority form, or garbage: inspect as given
  const slash = target.indexOf('/', scheme + 3);
  const question = target.indexOf('?', scheme + 3);
  if (slash === -1 && question === -1) return '/';
  if (slash === -1 || (question !== -1 && question < slash)) return `/${target.slice(question)}`;
  return target.slice(slash);
}

/** A request-target: the decoded path, then each parameter. Returns the decoded path. */
export function inspectTarget(target: string, pathLocation: string, queryLocation: string, found: Findings): string {
  const q = target.indexOf('?');
  const path = decodePercent(boundRaw(q === -1 ? target : target.slice(0, q)), false);
  inspectValue(path, pathLocation, 'path', found);
  if (q !== -1 && q + 1 < target.length) inspectParameters(target.slice(q + 1), queryLocation, found);
  return path;
}

/**
 * Reads the string literals of a JSON text, keys and values, even when it
 * is cut short. One pass finds each literal's end and its character
 * classes together, so the many inert keys and ids cost no copy.
 */
export function inspectJsonStrings(text: string, found: Findings): void {
  const n = text.length;
  const classOf = CLASS_OF;
  let i = text.indexOf('"');
  while (i !== -1 && i < n) {
    const start = i + 1;
    let classes = 0;
    let escaped = false;
    let j = start;
    for (; j < n; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        j++;
        continue;
      }
      classes |= c < 128 ? classOf[c]! : NON_ASCII;
    }
    const length = j - start;
    if (escaped) {
      const literal = text.slice(start, j);
      let value = literal;
      try {
        value = JSON.parse(`"${literal}"`) as string;
      } catch {
        value = literal; // cut in the middle of an escape: inspect it raw
      }
      inspectValue(value, 'body', 'value', found);
    } else if (length > MAX_CLASSIFIED_CHARS) {
      inspectValue(text.slice(start, j), 'body', 'value', found);
    } else if (length > 0 && (classes & ~(LETTER | DIGIT | DASH | UNDERSCORE)) !== 0) {
      inspectClassified(text.slice(start, j), classes, 'body', 'value', found);
    }
    i = j + 1 < n ? text.indexOf('"', j + 1) : -1;
  }
}
