/**
 * The intrusion-detection engine: pure functions over one request's line,
 * headers and a body prefix; no I/O, no clock. The pipeline's IDS stage
 * turns matches into scores (SEVERITY_SCORE) per client and decides.
 *
 * What is inspected, and why there:
 * - the path, percent-decoded up to DECODE_ROUNDS times (double encoding
 *   is a classic filter bypass: %252e%252e%252f);
 * - each query parameter name and value on its own, decoded the same way
 *   with "+" as space, so a value is judged in the context it will be used;
 * - every request header, each read by its grammar (headers.ts);
 * - bodies by media type (body.ts), on their first MAX_BODY_BYTES.
 *
 * Custom rules ([[security.ids.rules]]) are matched against the decoded
 * path and query, every header value (as sent, and percent-decoded when it
 * holds an escape), and the body window in every decoding the built-in
 * detectors see.
 *
 * The detectors: sqli.ts (a SQL tokenizer), xss.ts (an HTML tokenizer),
 * traversal.ts (every path encoding), command.ts (shell words), and the
 * expression-language check below.
 */
import { inspectBodyText } from './body.js';
import { CleanHeaders, inspectHeader } from './headers.js';
import { EXPRESSION, Findings, type IdsMatch, type Severity } from './match.js';
import { decodePercent } from './traversal.js';
import { boundRaw, inspectTarget, MAX_VALUE_CHARS, originForm } from './values.js';

export type { IdsCategory, IdsMatch, Severity } from './match.js';
export { MAX_BODY_BYTES } from './body.js';
export { MAX_VALUE_CHARS } from './values.js';

/** A custom rule from security.ids.rules: `pattern` is a JavaScript regular expression, matched case-insensitively. */
export interface IdsRuleSpec {
  name: string;
  pattern: string;
  severity: Severity;
  action: 'log' | 'block';
}

export interface IdsEngine {
  /**
   * Inspects the request line and every header. rawUrl is the
   * request-target as received (e.g. "/a/b?x=1"); headers are Node's
   * lower-cased IncomingHttpHeaders. Never throws; at most one match per
   * (rule, location).
   */
  inspectRequest(rawUrl: string, headers: Record<string, string | string[] | undefined>): IdsMatch[];
  /**
   * Inspects a body prefix (bounded by the caller) by content type:
   * urlencoded forms field by field, JSON string by string (keys too),
   * multipart text fields and file names, text and other non-binary types
   * as one text; custom rules see the whole window. Never throws.
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

interface CustomRule {
  readonly name: string;
  readonly severity: Severity;
  readonly action: 'log' | 'block';
  readonly regex: RegExp;
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

/** A header's value as one string: Node gives arrays only for Set-Cookie-like fields; Cookie parts join with "; ". */
function headerText(name: string, value: string | string[]): string {
  return typeof value === 'string' ? value : value.join(name === 'cookie' ? '; ' : ', ');
}

/** Characters of a request-line or header subject a custom rule reads. */
const MAX_RULE_SUBJECT_CHARS = MAX_VALUE_CHARS * 2;

/**
 * Builds an engine from the built-in detectors and `rules` (custom rules,
 * already validated by config/compile.ts; an invalid pattern throws here).
 */
export function createIdsEngine(rules: readonly IdsRuleSpec[]): IdsEngine {
  const custom = rules.map(compileRule);
  const cleanHeaders = new CleanHeaders();

  const matches = (rule: CustomRule, subject: string, limit: number): RegExpExecArray | null =>
    rule.regex.exec(subject.length > limit ? subject.slice(0, limit) : subject);

  /** The first header whose value (as sent, or percent-decoded) a rule matches. */
  function headerMatching(rule: CustomRule, headers: Record<string, string | string[] | undefined>): string | null {
    for (const name in headers) {
      const raw = headers[name];
      if (raw === undefined) continue;
      const value = headerText(name, raw);
      if (value.length === 0) continue;
      if (matches(rule, value, MAX_RULE_SUBJECT_CHARS) !== null) return name;
      if (value.indexOf('%') !== -1 && matches(rule, decodePercent(boundRaw(value), false), MAX_RULE_SUBJECT_CHARS) !== null) return name;
    }
    return null;
  }

  return {
    inspectRequest(rawUrl, headers) {
      const found = new Findings();
      try {
        const target = originForm(rawUrl);
        const path = inspectTarget(target, 'path', 'query', found);
        for (const name in headers) {
          const raw = headers[name];
          if (raw === undefined) continue;
          const value = headerText(name, raw);
          if (value.length === 0 || cleanHeaders.has(name, value)) continue;
          const before = found.matches.length;
          inspectHeader(name, value, found);
          // Log4Shell rode on any header an application logs, Struts on Content-Type.
          if (value.includes('{') && detectExpression(value)) found.addBuiltin(EXPRESSION, `header:${name}`);
          if (found.matches.length === before) cleanHeaders.add(name, value);
        }
        if (custom.length > 0) {
          const q = target.indexOf('?');
          const subject = q === -1 ? path : `${path}?${decodePercent(boundRaw(target.slice(q + 1)), true)}`;
          for (const rule of custom) {
            const match = matches(rule, subject, MAX_RULE_SUBJECT_CHARS);
            if (match !== null) {
              // Where the match starts: in the path, or from the "?" on.
              found.add(rule.name, 'custom', rule.severity, rule.action, match.index >= path.length ? 'query' : 'path');
              continue;
            }
            const name = headerMatching(rule, headers);
            if (name !== null) found.add(rule.name, 'custom', rule.severity, rule.action, `header:${name}`);
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
        const subjects = inspectBodyText(body, contentType, found, custom.length > 0);
        for (const rule of custom) {
          if (subjects.some((subject) => rule.regex.test(subject))) found.add(rule.name, 'custom', rule.severity, rule.action, 'body');
        }
      } catch {
        // As above: never throw into the pipeline.
      }
      return found.matches;
    },
  };
}
