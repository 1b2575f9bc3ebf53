/**
 * One file over 400 lines: the HTML tokenizer, its entity decoder and the rules on its tags are one reading of the input.
 *
 * Cross-site scripting detection by reading the input the way an HTML
 * parser would (WHATWG HTML §13.2.5, tokenization): tags are split into a
 * name and attributes, attribute values are entity-decoded, URLs have the
 * tab, newline and control characters removed that browsers drop (WHATWG
 * URL: "remove all ASCII tab or newline"), so "java&#x09;script:" and
 * "jav\tascript:" are seen as the "javascript:" they become.
 *
 * What counts: <script>; an element that acts on the page given any
 * value (base, meta, applet, ...; not iframe or object with an http(s) URL,
 * see ACTIVE_ELEMENTS); an
 * event-handler attribute on any element; a script URL in any attribute;
 * srcdoc; CSS that runs code (expression(), behavior, -moz-binding,
 * @import); the same attribute and URL tricks without a tag, when the
 * value is pasted inside one ('" onfocus=', "javascript:alert(1)");
 * breaking out of a JavaScript string ("';alert(1)//"); markup hidden
 * behind entities or JS escapes ("&lt;script", "\x3cscript"). Inert
 * markup (<b>, <p>, <a href="https://...">) and text such as "a < b > c"
 * or "I <3 you" do not count. Template injection is out of scope, but for
 * the AngularJS sandbox escape ("{{constructor.constructor(...)()}}").
 */

/**
 * Elements that act on the page whatever URL they are given (script always
 * counts): <base> re-points every relative script URL, <meta http-equiv>
 * refreshes or sets cookies, <applet> and the legacy <layer>, <xml>,
 * <import> run their content in the page. Embedding elements (<iframe>,
 * <frame>, <object>, <embed>, <portal>) are not among them: given an http(s)
 * URL they show another origin's document in a box that cannot script this
 * page (same-origin policy; plugins, which could, are gone from browsers),
 * and CMS content embeds videos and maps that way. Given a script or an
 * active data: URL, or srcdoc, they count like any element (isScriptUrl).
 */
const ACTIVE_ELEMENTS = new Set(['frameset', 'applet', 'base', 'meta', 'xml', 'import', 'layer', 'ilayer']);

/**
 * Event handler names for the attribute-context check without a tag, where
 * an "on" prefix alone ("online=1") is not enough. Inside a tag any
 * "on<letters>" attribute counts.
 */
const EVENT_HANDLER =
  /^on(?:abort|activate|after\w*|animation\w+|auxclick|before\w+|begin|blur|bounce|can\w*|change|click|close|contextmenu|copy|cuechange|cut|dblclick|drag\w*|drop|durationchange|emptied|end|ended|error|finish|focus\w*|fullscreen\w*|hashchange|help|input|invalid|key\w+|load\w*|lose\w+|message|mouse\w+|mozfullscreen\w+|move\w*|page\w+|paste|pause|play\w*|pointer\w+|popstate|progress|propertychange|ratechange|readystatechange|repeat|reset|resize|scroll\w*|search|seek\w+|select\w*|show|stalled|start|storage|submit|suspend|timeupdate|toggle|touch\w+|transition\w+|unload|volumechange|waiting|webkit\w+|wheel|zoom)$/;

/** Named character references that matter for hiding markup and schemes; most are HTML5's. */
const NAMED_ENTITIES: Readonly<Record<string, string>> = {
  lt: '<',
  gt: '>',
  amp: '&',
  quot: '"',
  apos: "'",
  colon: ':',
  tab: '\t',
  newline: '\n',
  lpar: '(',
  rpar: ')',
  sol: '/',
  bsol: '\\',
  period: '.',
  comma: ',',
  excl: '!',
  num: '#',
  semi: ';',
  equals: '=',
  grave: '`',
  nbsp: '\u00a0',
  lsqb: '[',
  rsqb: ']',
  lbrack: '[',
  rbrack: ']',
  lcub: '{',
  rcub: '}',
  lbrace: '{',
  rbrace: '}',
  plus: '+',
  quest: '?',
  dollar: '$',
  percnt: '%',
  commat: '@',
  lowbar: '_',
  ast: '*',
  midast: '*',
  vert: '|',
  verbar: '|',
  hat: '^',
};

/** The named references HTML still reads without a ";", as the start of a longer run of letters. */
const LEGACY_PREFIX = /^(?:quot|amp|lt|gt)/;

function isAsciiLetter(c: number): boolean {
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x7a;
}

function isHtmlSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;
}

/**
 * Decodes character references: "&#106;", "&#x6A;", "&#0000106" (the
 * semicolon is optional for numeric references), and the named ones in
 * NAMED_ENTITIES ("&colon;", "&Tab;"). Returns `s` itself when nothing was decoded.
 */
export function decodeHtmlEntities(s: string): string {
  let amp = s.indexOf('&');
  if (amp === -1) return s;
  let out = '';
  let from = 0;
  const n = s.length;
  for (; amp !== -1; amp = s.indexOf('&', amp + 1)) {
    let i = amp + 1;
    let decoded: string | null = null;
    if (s.charCodeAt(i) === 0x23 /* # */) {
      i += 1;
      let value = 0;
      let digits = 0;
      if ((s.charCodeAt(i) | 0x20) === 0x78) {
        i += 1;
        for (; i < n && digits < 16; i++, digits++) {
          const c = s.charCodeAt(i);
          const lower = c | 0x20;
          if (c >= 0x30 && c <= 0x39) value = value * 16 + (c - 0x30);
          else if (lower >= 0x61 && lower <= 0x66) value = value * 16 + (lower - 0x61 + 10);
          else break;
        }
      } else {
        for (; i < n && digits < 16; i++, digits++) {
          const c = s.charCodeAt(i);
          if (c >= 0x30 && c <= 0x39) value = value * 10 + (c - 0x30);
          else break;
        }
      }
      if (digits > 0) {
        decoded = value > 0 && value <= 0x10ffff ? String.fromCodePoint(value) : '\ufffd';
        if (s.charCodeAt(i) === 0x3b) i += 1;
      }
    } else {
      let j = i;
      while (j < n && j - i < 12 && isAsciiLetter(s.charCodeAt(j))) j++;
      if (j > i) {
        const name = s.slice(i, j).toLowerCase();
        const value = NAMED_ENTITIES[name];
        // Only the legacy four work without ";" (HTML's "&lt" is still "<"), and a
        // parser takes them as the longest prefix of the letters that follow
        // (WHATWG HTML §13.2.5.73): "&ltscript&gt" is "<script>".
        if (value !== undefined && (s.charCodeAt(j) === 0x3b || name === 'lt' || name === 'gt' || name === 'amp' || name === 'quot')) {
          decoded = value;
          i = s.charCodeAt(j) === 0x3b ? j + 1 : j;
        } else if (value === undefined) {
          const legacy = LEGACY_PREFIX.exec(name);
          if (legacy !== null) {
            decoded = NAMED_ENTITIES[legacy[0]]!;
            i += legacy[0].length;
          }
        }
      }
    }
    if (decoded !== null) {
      out += s.slice(from, amp) + decoded;
      from = i;
    }
  }
  return from === 0 ? s : out + s.slice(from);
}

/** JavaScript escapes "\x3c", "\u003c", "\u{3c}" that DOM sinks turn back into markup. */
function decodeJsEscapes(s: string): string {
  return s.replace(/\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|u\{([0-9a-f]{1,6})\})/gi, (whole, x?: string, u?: string, braced?: string) => {
    const cp = parseInt(x ?? u ?? braced ?? '', 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : whole;
  });
}

const SCRIPT_SCHEMES = new Set(['javascript', 'vbscript', 'livescript', 'mocha']);
/** data: media types a browser renders as a document or runs as script. */
const ACTIVE_DATA =
  /^\s*(?:text\/(?:html|xml|javascript|ecmascript)|application\/(?:xhtml\+xml|xml|javascript|ecmascript|x-shockwave-flash)|image\/svg\+xml)/i;

/**
 * Whether an attribute value is a URL that runs script. Leading spaces and
 * control characters are dropped and tabs and newlines removed anywhere, as
 * browsers do before reading the scheme.
 */
function isScriptUrl(rawValue: string): boolean {
  const value = rawValue.indexOf('&') === -1 ? rawValue : decodeHtmlEntities(rawValue);
  const n = value.length;
  let i = 0;
  while (i < n && value.charCodeAt(i) <= 0x20) i++;
  let scheme = '';
  for (; i < n && scheme.length <= 12; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20) continue; // tab, newline and other C0 controls inside the scheme
    if (c === 0x3a) break;
    if (!isAsciiLetter(c)) return false;
    scheme += String.fromCharCode(c | 0x20);
  }
  if (value.charCodeAt(i) !== 0x3a) return false;
  if (SCRIPT_SCHEMES.has(scheme)) return true;
  return scheme === 'data' && ACTIVE_DATA.test(value.slice(i + 1, i + 64));
}

/** CSS that runs script: IE's expression() and behavior, Gecko's -moz-binding, script URLs. */
function isActiveCss(raw: string): boolean {
  let css = raw.indexOf('&') === -1 ? raw : decodeHtmlEntities(raw);
  if (css.indexOf('/*') !== -1) css = css.replace(/\/\*[\s\S]*?\*\//g, ''); // "expr/**/ession("
  if (css.indexOf('\\') !== -1) {
    // CSS escapes: "\65 xpression", "\0075rl(", "exp\ression"
    css = css.replace(/\\([0-9a-f]{1,6})\s?|\\([\s\S])/gi, (_whole, hex?: string, other?: string) =>
      hex !== undefined ? String.fromCodePoint(Math.min(parseInt(hex, 16), 0x10ffff)) : (other ?? ''),
    );
  }
  return /expression\s*\(|(?:java|vb)script\s*:|behaviou?r\s*:|-moz-binding|@import/i.test(css.replace(/[\t\n\r\0]/g, ''));
}

/** Bound on how far one tag's attributes are read: a tag longer than this is cut. */
const MAX_TAG_CHARS = 2048;

/**
 * Reads every tag that starts at a "<" in `s`; true at the first one that
 * runs script. `decoded` is set for markup that was entity- or
 * escape-encoded in the input: such text is shown, not parsed, unless
 * something decodes it twice, so only script and script-running
 * attributes count there, not a documentation mention of "<object>".
 */
function hasActiveTag(s: string, decoded = false): boolean {
  const n = s.length;
  for (let lt = s.indexOf('<'); lt !== -1; lt = s.indexOf('<', lt + 1)) {
    let i = lt + 1;
    if (!isAsciiLetter(s.charCodeAt(i))) continue; // "a < b", "I <3", "</b>", "<!--"
    const nameStart = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (isHtmlSpace(c) || c === 0x2f || c === 0x3e || c === 0x3c || c === 0) break;
      i++;
    }
    let name = s.slice(nameStart, Math.min(i, nameStart + 32)).toLowerCase();
    const colon = name.lastIndexOf(':'); // "<svg:script>"
    if (colon !== -1) name = name.slice(colon + 1);
    if (name === 'script') return true;
    if (name === 'style') {
      // The style sheet runs to "</style" (the next "<"), at most MAX_TAG_CHARS.
      const next = s.indexOf('<', i);
      if (isActiveCss(s.slice(i, Math.min(next === -1 ? n : next, i + MAX_TAG_CHARS)))) return true;
    }
    const attributes = tagAttributesRunScript(s, i, Math.min(n, lt + MAX_TAG_CHARS), name);
    if (attributes === RUNS_SCRIPT) return true;
    // <iframe src=...>, <object data=...>, <base href=...>: an active element given
    // something to load; "<Object Oriented Programming>" in prose gives it nothing.
    if (attributes === HAS_VALUE && !decoded && ACTIVE_ELEMENTS.has(name)) return true;
  }
  return false;
}

const INERT_ATTRIBUTES = 0;
const HAS_VALUE = 1;
const RUNS_SCRIPT = 2;

/** INERT_ATTRIBUTES, HAS_VALUE (some attribute has a value), or RUNS_SCRIPT. */
function tagAttributesRunScript(s: string, from: number, limit: number, tag: string): number {
  let result = INERT_ATTRIBUTES;
  let i = from;
  while (i < limit) {
    const c = s.charCodeAt(i);
    if (isHtmlSpace(c) || c === 0x2f || c === 0) {
      i++;
      continue;
    }
    if (c === 0x3e || c === 0x3c) return result; // end of tag, or the next tag (read on its own)
    const nameStart = i;
    i++; // an attribute name may start with "=" (HTML §13.2.5.32)
    while (i < limit) {
      const d = s.charCodeAt(i);
      if (isHtmlSpace(d) || d === 0x2f || d === 0x3e || d === 0x3d || d === 0x3c) break;
      i++;
    }
    const nameEnd = i;
    while (i < limit && isHtmlSpace(s.charCodeAt(i))) i++;
    let value = '';
    if (s.charCodeAt(i) === 0x3d) {
      result = HAS_VALUE;
      i++;
      while (i < limit && isHtmlSpace(s.charCodeAt(i))) i++;
      const quote = s.charCodeAt(i);
      if (quote === 0x22 || quote === 0x27 || quote === 0x60) {
        const close = s.indexOf(String.fromCharCode(quote), i + 1);
        const end = close === -1 || close > limit ? limit : close;
        value = s.slice(i + 1, end);
        i = end + 1;
      } else {
        const valueStart = i;
        while (i < limit && !isHtmlSpace(s.charCodeAt(i)) && s.charCodeAt(i) !== 0x3e) i++;
        value = s.slice(valueStart, i);
      }
    }
    if (attributeRunsScript(s, nameStart, nameEnd, value, tag)) return RUNS_SCRIPT;
  }
  return result;
}

function attributeRunsScript(s: string, nameStart: number, nameEnd: number, value: string, tag: string): boolean {
  // on<letters>: any event handler, including ones a browser adds tomorrow.
  if (
    nameEnd - nameStart >= 5 &&
    (s.charCodeAt(nameStart) | 0x20) === 0x6f &&
    (s.charCodeAt(nameStart + 1) | 0x20) === 0x6e &&
    isAsciiLetter(s.charCodeAt(nameStart + 2)) &&
    isAsciiLetter(s.charCodeAt(nameStart + 3)) &&
    isAsciiLetter(s.charCodeAt(nameStart + 4))
  ) {
    return true;
  }
  const name = nameEnd - nameStart <= 16 ? s.slice(nameStart, nameEnd).toLowerCase() : '';
  if (name === 'srcdoc') return true;
  if (value.indexOf('&{') !== -1) return true; // Netscape's JavaScript entities: size="&{alert(1)}"
  if (tag === 'style' && name === 'type' && /script/i.test(value)) return true;
  if (name === 'style' && isActiveCss(value)) return true;
  if (tag === 'link' && name === 'href') return true; // remote style sheets or HTML imports
  return value.length > 0 && isScriptUrl(value);
}

/**
 * Characters after which a scheme starts a URL value: start, "=", quotes,
 * "(" (CSS url()), ">" (text after a tag), "/" (a path segment routed into a link).
 */
function opensValue(c: number): boolean {
  return Number.isNaN(c) || c === 0x3d || c === 0x22 || c === 0x27 || c === 0x60 || c === 0x28 || c === 0x3e || c === 0x2c || c === 0x2f;
}

/** How script begins: punctuation, or a name followed by a call, a member, an index or an assignment. */
const SCRIPT_START = /^\s{0,8}(?:[/('"`[!+\-~%{]|[a-z_$][\w$]{0,64}\s{0,4}[(`.[=;])/i;

/**
 * "javascript:..." without a tag: the value is meant for an href or src
 * ("?next=javascript:alert(1)") or breaks into one ('x" href="javascript:').
 * Read backwards from each ":" so no copy is made.
 */
function hasBareScriptUrl(s: string): boolean {
  for (let colon = s.indexOf(':'); colon !== -1; colon = s.indexOf(':', colon + 1)) {
    let i = colon - 1;
    let letters = 0;
    let scheme = '';
    while (i >= 0 && letters <= 10) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === 0x7f) {
        i--; // browsers drop tabs and newlines inside a URL
        continue;
      }
      if (!isAsciiLetter(c)) break;
      scheme = String.fromCharCode(c | 0x20) + scheme;
      letters++;
      i--;
    }
    if (letters < 4 || letters > 10) continue;
    while (i >= 0 && s.charCodeAt(i) <= 0x20) i--; // ' href= "javascript:'
    if (!opensValue(i < 0 ? NaN : s.charCodeAt(i))) continue;
    if (SCRIPT_SCHEMES.has(scheme)) {
      // Script must follow: "javascript:alert(1)", "javascript://%0a...", not "javascript: the good parts (2008)".
      const rest = s.slice(colon + 1, colon + 256);
      if (SCRIPT_START.test(rest) && /[(`=]/.test(rest)) return true;
    } else if (scheme === 'data' && ACTIVE_DATA.test(s.slice(colon + 1, colon + 64))) {
      return true;
    }
  }
  return false;
}

/**
 * An event handler pasted into an attribute context without a tag:
 * '" onmouseover="alert(1)', "x onerror=alert(1)". The name must be a real
 * handler, follow a break (quote, space, "/"), and its value must call or
 * assign something.
 */
function hasBareEventHandler(s: string): boolean {
  for (let eq = s.indexOf('='); eq !== -1; eq = s.indexOf('=', eq + 1)) {
    let end = eq;
    while (end > 0 && isHtmlSpace(s.charCodeAt(end - 1))) end--;
    let start = end;
    while (start > 0 && end - start < 32 && isAsciiLetter(s.charCodeAt(start - 1))) start--;
    if (end - start < 5 || (s.charCodeAt(start) | 0x20) !== 0x6f || (s.charCodeAt(start + 1) | 0x20) !== 0x6e) continue;
    const before = start === 0 ? NaN : s.charCodeAt(start - 1);
    if (
      !(
        Number.isNaN(before) ||
        isHtmlSpace(before) ||
        before === 0x22 ||
        before === 0x27 ||
        before === 0x60 ||
        before === 0x2f ||
        before === 0x3b
      )
    )
      continue;
    if (!EVENT_HANDLER.test(s.slice(start, end).toLowerCase())) continue;
    if (/[(`=]|&#|\\u|\\x/.test(s.slice(eq + 1, eq + 256))) return true;
  }
  return false;
}

/**
 * Breaking out of a JavaScript string into a call: "';alert(1)//",
 * '"-alert(1)-"', "');confirm(1);('", "'+document.cookie+'". Bounded
 * repetitions only, so the scan stays linear.
 */
const JS_BREAKOUT =
  /['"`]\s{0,4}[-+*/%|&^,;)\]}]{1,4}\s{0,4}(?:(?:alert|confirm|prompt|eval|settimeout|setinterval|fetch|import)\s{0,4}[(`]|document\s{0,2}\.\s{0,2}(?:cookie|write|domain|location)|window\s{0,2}\.\s{0,2}location|location\s{0,2}\.\s{0,2}(?:href|assign|replace))/i;

/** CSS without a tag, in a style attribute: "x:expression(alert(1))", "behavior:url(x.htc)". */
function hasBareActiveCss(s: string): boolean {
  if (!/expression|behavio|binding|\\/i.test(s)) return false;
  let css = s.indexOf('/*') === -1 ? s : s.replace(/\/\*[\s\S]*?\*\//g, '');
  if (css.indexOf('\\') !== -1) css = css.replace(/\\/g, '');
  return /:\s{0,8}expression\s{0,8}\(|behaviou?r\s{0,8}:\s{0,8}url\s{0,8}\(|-moz-binding\s{0,8}:/i.test(css);
}

/** Every rule needs one of these characters. */
const XSS_TEST = /[<&\\:="'`{]/;
/** What an AngularJS sandbox escape calls; searched first, then the "{{" before it. */
const ANGULAR_CALL = /constructor|\$eval|\$on\b|(?:alert|prompt|confirm)\s{0,4}\(/gi;

/** A template expression ("{{" with no "}" since) at most 256 characters before a call that escapes the sandbox. */
function hasAngularEscape(s: string): boolean {
  ANGULAR_CALL.lastIndex = 0;
  for (let match = ANGULAR_CALL.exec(s); match !== null; match = ANGULAR_CALL.exec(s)) {
    const from = Math.max(0, match.index - 256);
    const window = s.slice(from, match.index); // bounded look-back: never rescan the whole input per match
    const open = window.lastIndexOf('{{');
    if (open !== -1 && window.indexOf('}', open + 2) === -1) return true;
  }
  return false;
}
const QUOTE_TEST = /['"`]/;

/** True when `input` (already percent-decoded, bounded by the caller) carries script for a browser. */
export function detectXss(input: string): boolean {
  // Which rules can apply at all: one fast search, then one per character class.
  if (!XSS_TEST.test(input)) return false;
  const lt = input.indexOf('<') !== -1;
  const amp = input.indexOf('&') !== -1;
  const backslash = input.indexOf('\\') !== -1;
  let colon = input.indexOf(':') !== -1;
  let equals = input.indexOf('=') !== -1;
  let quote = QUOTE_TEST.test(input);
  if (lt && hasActiveTag(input)) return true;
  let text = input;
  if (amp) {
    text = decodeHtmlEntities(input);
    if (text !== input) {
      if (text.indexOf('<') !== -1 && hasActiveTag(text, true)) return true;
      // Entities may spell the characters the rules below look for ("&colon;", "&#61;").
      colon ||= text.indexOf(':') !== -1;
      equals ||= text.indexOf('=') !== -1;
      quote ||= /['"`]/.test(text);
    }
  }
  if (backslash && /\\(?:x3c|u003c|u\{3c\})/i.test(text) && hasActiveTag(decodeJsEscapes(text), true)) return true;
  if (colon && hasBareScriptUrl(text)) return true;
  if (equals && hasBareEventHandler(text)) return true;
  if (quote && JS_BREAKOUT.test(text)) return true;
  // AngularJS sandbox escapes: "{{constructor.constructor('alert(1)')()}}". Template
  // injection is otherwise out of scope; this form runs script in the page.
  if (input.indexOf('{{') !== -1 && hasAngularEscape(input)) return true;
  // Every CSS rule needs a ":" (expression() in a declaration, behavior:, -moz-binding:).
  return colon && hasBareActiveCss(text);
}
