/**
 * What the IDS engine reports: the rules, their severities, and the
 * findings of one inspection (at most one match per rule and location).
 */

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export type IdsCategory = 'sqli' | 'xss' | 'traversal' | 'command' | 'custom';

export interface IdsMatch {
  rule: string;
  category: IdsCategory;
  severity: Severity;
  action: 'log' | 'block';
  /** 'path' | 'query' | 'header:<name>' | 'body' */
  location: string;
}

export interface BuiltinRule {
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
export const SQLI: BuiltinRule = { name: 'sqli', category: 'sqli', severity: 'critical' };
export const XSS: BuiltinRule = { name: 'xss', category: 'xss', severity: 'high' };
export const TRAVERSAL: BuiltinRule = { name: 'path-traversal', category: 'traversal', severity: 'high' };
export const COMMAND: BuiltinRule = { name: 'command-injection', category: 'command', severity: 'critical' };
/** Expression-language injection (Log4Shell lookups, OGNL, Spring EL): code run by the application. */
export const EXPRESSION: BuiltinRule = { name: 'expression-injection', category: 'command', severity: 'critical' };

/** The matches of one inspection, at most one per (rule, location). */
export class Findings {
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
