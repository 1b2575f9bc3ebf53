/**
 * The intrusion-detection engine: pure functions over one request's line,
 * a few headers and a body prefix; no I/O, no clock. The pipeline's IDS
 * stage turns matches into scores (SEVERITY_SCORE) per client and decides.
 *
 * What is inspected, and why there:
 * - the path, percent-decoded up to DECODE_ROUNDS times (double encoding
 *   is a classic filter bypass: %252e%252e%252f);
 * - each query parameter name and value on its own, decoded the same way
 *   with "+" as space, so a value is judged in the context it will be used;
 * - headers applications copy into SQL, HTML, logs or shells (SELECTED_HEADERS);
 * - bodies by media type (inspectBody).
 *
 * Bounds: each value is inspected on its first MAX_VALUE_CHARS characters
 * (an attack hidden after 8 KiB of padding in one value is missed; the URL
 * and header sizes are bounded earlier by the header-limits stage), and a
 * body on its first MAX_BODY_BYTES. Detectors use no nested quantifiers on
 * input, so work is linear in the bounded size.
 */
import { detectCommand } from './command.js';
import { detectSqli, detectSqliInPath } from './sqli.js';
import { decodePercent, detectTraversal } from './traversal.js';
import { detectXss } from './xss.js';

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export type IdsCategory = 'sqli' | 'xss' | 'traversal' | 'command' | 'custom';

/** A custom rule from security.ids.rules: `pattern` is a JavaScript regular expression, matched case-insensitively. */
export interface IdsRuleSpec {
  name: string;
  pattern: string;
  severity: Severity;
  action: 'log' | 'block';
}

export interface IdsMatch {
  rule: string;
  category: IdsCategory;
  severity: Severity;
  action: 'log' | 'block';
  /** 'path' | 'query' | 'header:<name>' | 'body' */
  location: string;
}

export interface IdsEngine {
  /**
   * Inspects the request line and selected headers. rawUrl is the
   * request-target as received (e.g. "/a/b?x=1"); headers are Node's
   * lower-cased IncomingHttpHeaders. Never throws; at most one match per
   * (rule, location).
   */
  inspectRequest(rawUrl: string, headers: Record<string, string | string[] | undefined>): IdsMatch[];
  /**
   * Inspects a body prefix (bounded by the caller) by content type:
   * urlencoded forms field by field, JSON string by string (keys too),
   * multipart text fields and file names, text and other non-binary types
   * as one text. Never throws.
   */
  inspectBody(body: Buffer, contentType: string | undefined): IdsMatch[];
}

/**
 * Points a match adds to its client's score, which the IDS stage compares
 * with security.ids.alert_threshold (default 5) and block_threshold
 * (default 20). The steps are chosen against those defaults: one high or
 * critical match alerts at once, a medium needs two and a low five; two
 * critical matches (or four high ones) block, while twenty low-severity
 * log rules would be needed to block on their own. Critical is double
 * high, not one step above it, so that the attacks that compromise the
 * server count twice as fast as those that target other users.
 */
export const SEVERITY_SCORE: Record<Severity, number> = Object.freeze({ low: 1, medium: 3, high: 5, critical: 10 });

/** Characters of one value inspected; longer values are inspected on this prefix. */
export const MAX_VALUE_CHARS = 8192;
/** Bytes of a body inspected, whatever prefix the caller hands over. */
export const MAX_BODY_BYTES = 64 * 1024;

interface BuiltinRule {
  readonly name: string;
  readonly category: Exclude<IdsCategory, 'custom'>;
  readonly severity: Severity;
}

/**
 * The built-in rules, all with action "block".
 * - sqli, critical: one request can read or destroy the whole database,
 *   and tools (sqlmap) automate it end to end.
 * - command-injection, critical: code execution on the upstream host.
 * - expression-injection, critical: the same, through an expression
 *   language (Log4j lookups, OGNL, Spring EL) in any header.
 * - path-traversal, high: discloses files (keys, credentials, source) but
 *   does not run code by itself.
 * - xss, high: runs in another user's browser; it needs a reflection and a
 *   victim, and does not compromise the server.
 */
const SQLI: BuiltinRule = { name: 'sqli', category: 'sqli', severity: 'critical' };
const XSS: BuiltinRule = { name: 'xss', category: 'xss', severity: 'high' };
const TRAVERSAL: BuiltinRule = { name: 'path-traversal', category: 'traversal', severity: 'high' };
const COMMAND: BuiltinRule = { name: 'command-injection', category: 'command', severity: 'critical' };
/** Expression-language injection (Log4Shell lookups, OGNL, Spring EL): code run by the application. */
const EXPRESSION: BuiltinRule = { name: 'expression-injection', category: 'command', severity: 'critical' };

/** Characters of a header value searched for expressions. */
const MAX_EXPRESSION_SCAN_CHARS = 8192;
/** How far past "${" / "%{" / "#{" an expression is read. */
const EXPRESSION_WINDOW_CHARS = 256;
/**
 * What follows the opening of an expression that a template never needs:
 * Log4j lookups (jndi:, env:, lower:, ...; CVE-2021-44228) and the nested or
 * defaulted forms that hide them (${${lower:j}ndi:, ${::-j}).
 */
const LOOKUP_START =
  /^(?:jndi|(?:lower|upper|env|sys|java|date|main|ctx|bundle|base64|k8s|docker|spring|web|log4j|marker|sd|event|map):|::-|[$%#]\{)/;
/** Inside an expression: OGNL and EL reaching for classes, members or the runtime (CVE-2017-5638). */
const CODE_INSIDE = /[#@]|\bnew\s|\.class\b|getruntime|processbuilder|\bt\s*\(/;

/**
 * Expression-language injection in a header value: "${", "%{" or "#{"
 * opening a Log4j lookup, or an expression that names a class, a member (#,
 * @) or the runtime. Header values of ordinary traffic contain none.
 */
export function detectExpression(value: string): boolean {
  const text = (value.length > MAX_EXPRESSION_SCAN_CHARS ? value.slice(0, MAX_EXPRESSION_SCAN_CHARS) : value).toLowerCase();
  for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) {
    const opener = text.charCodeAt(i - 1);
    if (opener !== 0x24 && opener !== 0x25 && opener !== 0x23) continue; // $ % #
    const window = text.slice(i + 1, i + 1 + EXPRESSION_WINDOW_CHARS);
    if (LOOKUP_START.test(window)) return true;
    const end = window.indexOf('}');
    if (CODE_INSIDE.test(end === -1 ? window : window.slice(0, end))) return true;
  }
  return false;
}

/**
 * Headers inspected besides the request line, each because applications
 * pass it on to a SQL query, an HTML page, a log viewer or a shell:
 * - user-agent, referer: stored by analytics and shown in admin pages;
 *   the classic carriers of Shellshock and of scanner payloads;
 * - cookie: read by the application as parameters (each value on its own);
 * - x-forwarded-for: parsed as a client address by applications behind us
 *   and often written to SQL unvalidated;
 * - x-original-url, x-rewrite-url: frameworks (Symfony, IIS URL Rewrite)
 *   take them as the request path, so they are inspected as one.
 * Others (Accept-*, Host, Content-Type) are either validated by the earlier
 * stages or not used as data by typical applications.
 */
const SELECTED_HEADERS = ['user-agent', 'referer', 'cookie', 'x-forwarded-for', 'x-original-url', 'x-rewrite-url'] as const;
type SelectedHeader = (typeof SELECTED_HEADERS)[number];

/** How a value is read: as a request path, as one parameter, or as a whole body text. */
type Shape = 'path' | 'value' | 'text';

/**
 * Clean header values remembered per engine: real traffic repeats a few
 * User-Agent, Referer and Cookie values, so most requests skip their
 * inspection. Only built-in results are cached (custom rules always run),
 * only values up to CACHE_KEY_CHARS long, and the map is emptied when it
 * reaches CACHE_ENTRIES (at most about 2 MB per header name).
 */
const CACHE_ENTRIES = 1024;
const CACHE_KEY_CHARS = 1024;

class CleanValues {
  private readonly seen = new Set<string>();

  has(value: string): boolean {
    return this.seen.has(value);
  }

  add(value: string): void {
    if (value.length > CACHE_KEY_CHARS) return;
    if (this.seen.size >= CACHE_ENTRIES) this.seen.clear();
    this.seen.add(value);
  }
}

interface CustomRule {
  readonly name: string;
  readonly severity: Severity;
  readonly action: 'log' | 'block';
  readonly regex: RegExp;
}

/** The matches of one inspection, at most one per (rule, location). */
class Findings {
  matches: IdsMatch[] = [];

  has(rule: string, location: string): boolean {
    for (const match of this.matches) if (match.rule === rule && match.location === location) return true;
    return false;
  }

  add(rule: string, category: IdsCategory, severity: Severity, action: 'log' | 'block', location: string): void {
    if (!this.has(rule, location)) this.matches.push({ rule, category, severity, action, location });
  }

  addBuiltin(rule: BuiltinRule, location: string): void {
    this.add(rule.name, rule.category, rule.severity, 'block', location);
  }
}

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
/** A value of only these (an id, a slug, a token, "index.html") needs only the traversal check. */
const INERT = LETTER | DIGIT | DASH | UNDERSCORE | DOT;
/** In a path, "/" and "~" too ("/~user/docs/index.html"). */
const INERT_IN_PATH = INERT | SLASH | TILDE;
/** Longer values are not classified: each detector's own filters are faster on them. */
const MAX_CLASSIFIED_CHARS = 256;

function charClasses(s: string): number {
  if (s.length > MAX_CLASSIFIED_CHARS) return ALL_CLASSES;
  let classes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    classes |= c < 128 ? CLASS_OF[c]! : NON_ASCII;
  }
  return classes;
}

function isInert(s: string): boolean {
  return (charClasses(s) & ~INERT) === 0;
}

/** Runs the built-in detectors that can apply to one decoded value. */
function inspectValue(raw: string, location: string, shape: Shape, found: Findings): void {
  if (raw.length === 0) return;
  const value = raw.length > MAX_VALUE_CHARS ? raw.slice(0, MAX_VALUE_CHARS) : raw;
  inspectClassified(value, charClasses(value), location, shape, found);
}

/** inspectValue for a value whose character classes are already known. */
function inspectClassified(value: string, classes: number, location: string, shape: Shape, found: Findings): void {
  if ((classes & ~(shape === 'path' ? INERT_IN_PATH : INERT)) === 0) {
    // Without a separator, only a dot can start a traversal ("..") or a target ("win.ini").
    if ((classes & (DOT | SLASH)) !== 0 && !found.has(TRAVERSAL.name, location) && detectTraversal(value, true))
      found.addBuiltin(TRAVERSAL, location);
    // "/dev/tcp/10.0.0.1/4444" is all inert characters, and a reverse shell.
    if ((classes & SLASH) !== 0 && !found.has(COMMAND.name, location) && detectCommand(value)) found.addBuiltin(COMMAND, location);
    return;
  }
  if ((classes & TRAVERSAL_NEEDS) !== 0 && !found.has(TRAVERSAL.name, location) && detectTraversal(value, shape !== 'text'))
    found.addBuiltin(TRAVERSAL, location);
  if ((classes & SQLI_NEEDS) !== 0 && !found.has(SQLI.name, location) && (shape === 'path' ? detectSqliInPath(value) : detectSqli(value)))
    found.addBuiltin(SQLI, location);
  if ((classes & XSS_NEEDS) !== 0 && !found.has(XSS.name, location) && detectXss(value)) found.addBuiltin(XSS, location);
  const commandMayApply = (classes & COMMAND_NEEDS) !== 0 || ((classes & SPACE) !== 0 && (classes & DASH) !== 0); // "nc -e", "sh -i"
  if (commandMayApply && !found.has(COMMAND.name, location) && detectCommand(value)) found.addBuiltin(COMMAND, location);
}

/** Raw text before decoding is cut at three times the value bound (every character may be "%XX"). */
function boundRaw(s: string): string {
  return s.length > MAX_VALUE_CHARS * 3 ? s.slice(0, MAX_VALUE_CHARS * 3) : s;
}

/** Each name and value of "a=1&b=2", decoded (with "+" as space) and inspected on its own. */
function inspectParameters(query: string, location: string, found: Findings): void {
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
function originForm(target: string): string {
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
function inspectTarget(target: string, pathLocation: string, queryLocation: string, found: Findings): string {
  const q = target.indexOf('?');
  const path = decodePercent(boundRaw(q === -1 ? target : target.slice(0, q)), false);
  inspectValue(path, pathLocation, 'path', found);
  if (q !== -1 && q + 1 < target.length) inspectParameters(target.slice(q + 1), queryLocation, found);
  return path;
}

function headerText(value: string | string[] | undefined, separator: string): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.join(separator);
}

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

function inspectHeader(name: SelectedHeader, value: string, found: Findings): void {
  const location = `header:${name}`;
  switch (name) {
    case 'cookie':
      inspectCookies(value, location, found);
      return;
    case 'referer': {
      // An absolute URL: its path and parameters, each in its context.
      const scheme = /^https?:\/\//i.exec(value);
      if (scheme !== null) {
        const hash = value.indexOf('#');
        const rest = value.slice(scheme[0].length, hash === -1 ? value.length : hash);
        const slash = rest.search(/[/?]/);
        if (slash === -1) return;
        const host = rest.slice(0, slash);
        if (!isInert(host.replace(/[:@[\]]/g, ''))) inspectValue(decodePercent(boundRaw(host), false), location, 'value', found);
        inspectTarget(rest.charCodeAt(slash) === 0x3f ? `/${rest.slice(slash)}` : rest.slice(slash), location, location, found);
        return;
      }
      inspectValue(decodePercent(boundRaw(value), false), location, 'value', found);
      return;
    }
    case 'x-original-url':
    case 'x-rewrite-url':
      inspectTarget(originForm(value), location, location, found);
      return;
    default:
      inspectValue(decodePercent(boundRaw(value), false), location, 'value', found);
  }
}

/** Media types whose bodies are binary: inspecting them as text finds only noise. */
const BINARY_MEDIA =
  /^(?:image|audio|video|font|model)\/|^application\/(?:octet-stream|zip|gzip|x-gzip|x-tar|x-7z-compressed|pdf|wasm|grpc|x-protobuf|protobuf|vnd\.|msword|ogg|x-bzip2|zstd)/;

/**
 * Reads the string literals of a JSON text, keys and values, even when it
 * is cut short. One pass finds each literal's end and its character
 * classes together, so the many inert keys and ids cost no copy.
 */
function inspectJsonStrings(text: string, found: Findings): void {
  const n = text.length;
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
      classes |= c < 128 ? CLASS_OF[c]! : NON_ASCII;
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

/** multipart/form-data: text fields as values, file names as values, file contents only when textual. */
function inspectMultipart(text: string, contentType: string, found: Findings): void {
  const match = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType);
  const boundary = match === null ? undefined : (match[1] ?? match[2]);
  if (boundary === undefined) {
    inspectText(text, found);
    return;
  }
  const parts = text.split(`--${boundary}`);
  for (let p = 1; p < parts.length; p++) {
    const part = parts[p]!;
    if (part.startsWith('--')) break;
    let headerEnd = part.indexOf('\r\n\r\n');
    let bodyStart = headerEnd + 4;
    if (headerEnd === -1) {
      headerEnd = part.indexOf('\n\n');
      bodyStart = headerEnd + 2;
    }
    if (headerEnd === -1) continue;
    const headers = part.slice(0, headerEnd);
    let content = part.slice(bodyStart);
    if (content.endsWith('\r\n')) content = content.slice(0, -2);
    const filename = /\bfilename="([^"]*)"|\bfilename=([^;\r\n]*)/i.exec(headers);
    if (filename !== null) {
      inspectValue(filename[1] ?? filename[2] ?? '', 'body', 'value', found);
      const partType = /^content-type:\s*([^\s;]+)/im.exec(headers)?.[1]?.toLowerCase() ?? 'application/octet-stream';
      if (!partType.startsWith('text/') || content.indexOf('\0') !== -1) continue;
      inspectText(content, found);
    } else {
      inspectValue(content, 'body', 'value', found);
    }
  }
}

/** A whole text, in MAX_VALUE_CHARS windows that overlap so an attack on a window edge is seen whole. */
function inspectText(text: string, found: Findings): void {
  const overlap = 512;
  for (let from = 0; from < text.length; from += MAX_VALUE_CHARS - overlap) {
    inspectValue(text.slice(from, from + MAX_VALUE_CHARS), 'body', 'text', found);
    if (from + MAX_VALUE_CHARS >= text.length) break;
  }
}

function compileRule(spec: IdsRuleSpec): CustomRule {
  let regex: RegExp;
  try {
    regex = new RegExp(spec.pattern, 'i');
  } catch {
    // config/compile.ts refuses such a rule before any engine exists; reaching here is a caller bug.
    throw new TypeError(`IDS rule ${JSON.stringify(spec.name)}: pattern is not a valid regular expression`);
  }
  return { name: spec.name, severity: spec.severity, action: spec.action, regex };
}

/**
 * Builds an engine from the built-in detectors and `rules` (custom rules,
 * already validated by config/compile.ts; an invalid pattern throws here).
 */
export function createIdsEngine(rules: readonly IdsRuleSpec[]): IdsEngine {
  const custom = rules.map(compileRule);
  const cleanHeaders = new Map<SelectedHeader, CleanValues>(SELECTED_HEADERS.map((name) => [name, new CleanValues()]));

  function customMatch(rule: CustomRule, subject: string): RegExpExecArray | null {
    return rule.regex.exec(subject.length > MAX_VALUE_CHARS * 2 ? subject.slice(0, MAX_VALUE_CHARS * 2) : subject);
  }

  return {
    inspectRequest(rawUrl, headers) {
      const found = new Findings();
      try {
        const target = originForm(rawUrl);
        const path = inspectTarget(target, 'path', 'query', found);
        for (const name of SELECTED_HEADERS) {
          const value = headerText(headers[name], name === 'cookie' ? '; ' : ', ');
          if (value === undefined || value.length === 0) continue;
          const clean = cleanHeaders.get(name)!;
          if (clean.has(value)) continue;
          const before = found.matches.length;
          inspectHeader(name, value, found);
          if (found.matches.length === before) clean.add(value);
        }
        // Every header, not only the selected ones: Log4Shell rode on any
        // header an application logs, Struts on Content-Type.
        for (const name in headers) {
          const value = headers[name];
          const text = Array.isArray(value) ? value.join(', ') : value;
          if (text?.includes('{') && !found.has(EXPRESSION.name, `header:${name}`) && detectExpression(text))
            found.addBuiltin(EXPRESSION, `header:${name}`);
        }
        if (custom.length > 0) {
          const q = target.indexOf('?');
          const subject = q === -1 ? path : `${path}?${decodePercent(boundRaw(target.slice(q + 1)), true)}`;
          for (const rule of custom) {
            const match = customMatch(rule, subject);
            if (match !== null) {
              // Where the match starts: in the path, or from the "?" on.
              found.add(rule.name, 'custom', rule.severity, rule.action, match.index >= path.length ? 'query' : 'path');
              continue;
            }
            for (const name of SELECTED_HEADERS) {
              const value = headerText(headers[name], name === 'cookie' ? '; ' : ', ');
              if (value !== undefined && value.length > 0 && customMatch(rule, value) !== null) {
                found.add(rule.name, 'custom', rule.severity, rule.action, `header:${name}`);
                break;
              }
            }
          }
        }
      } catch {
        // A detector bug must not take the request down with it; what was found so far stands.
      }
      return found.matches;
    },

    inspectBody(body, contentType) {
      const found = new Findings();
      try {
        if (body.length === 0) return found.matches;
        const mediaType = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
        if (BINARY_MEDIA.test(mediaType)) return found.matches;
        const text = body.subarray(0, MAX_BODY_BYTES).toString('utf8');
        if (mediaType === 'application/x-www-form-urlencoded') {
          inspectParameters(text, 'body', found);
        } else if (mediaType.endsWith('json')) {
          inspectJsonStrings(text, found);
        } else if (mediaType === 'multipart/form-data') {
          inspectMultipart(text, contentType ?? '', found);
        } else if (text.slice(0, 1024).indexOf('\0') === -1) {
          inspectText(text, found);
        }
      } catch {
        // As above: never throw into the pipeline.
      }
      return found.matches;
    },
  };
}
