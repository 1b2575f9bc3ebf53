/**
 * Choosing a certificate by the server name a client sends (RFC 6066 §3),
 * and the DNS-name rules that certificates and SNI share (RFC 6125 §6.4).
 *
 * Names are compared in their ASCII form (IDNs as A-labels, "xn--..."),
 * case-insensitively, with one trailing dot removed. A wildcard is accepted
 * only as the whole left-most label ("*.example.com") and stands for exactly
 * one label: it covers "a.example.com" but neither "example.com" nor
 * "a.b.example.com" (RFC 6125 §6.4.3, and what browsers do).
 */

/** Longest DNS name in text form, without the trailing dot (RFC 1035 §2.3.4). */
const MAX_DNS_NAME_LENGTH = 253;

/** One LDH label (RFC 1123 §2.1): letters, digits, hyphens, not at either end. */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Parses a host name as configured (an `[ssl.domains."name"]` key) or as
 * found in a certificate, and returns it lower-cased without a trailing dot,
 * or null when it is not a valid name.
 *
 * With `allowWildcard`, "*.suffix" is accepted when the suffix has at least
 * two labels: "*.com" would claim a whole top-level domain. Partial wildcards
 * ("w*.example.com") are refused: RFC 6125 §7.2 discourages them and we never
 * match them. IP literals are refused (an all-digit last label): RFC 6066 §3
 * forbids them in SNI, so a table keyed by them could never match.
 */
export function parseDnsName(text: string, allowWildcard: boolean): string | null {
  let name = text.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0 || name.length > MAX_DNS_NAME_LENGTH) return null;
  const labels = name.split('.');
  let first = 0;
  if (labels[0] === '*') {
    if (!allowWildcard || labels.length < 3) return null;
    first = 1;
  }
  for (let i = first; i < labels.length; i++) {
    if (!LABEL.test(labels[i] ?? '')) return null;
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) return null;
  return name;
}

/**
 * Whether the certificate name `pattern` (exact or "*.suffix") covers `name`.
 * Both must already be normalised by `parseDnsName`. A wildcard `name` is
 * covered only by the identical wildcard: "a.example.com" in a certificate
 * does not serve every name "*.example.com" stands for.
 */
export function dnsNameCovers(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  if (!pattern.startsWith('*.') || name.startsWith('*.')) return false;
  const dot = name.indexOf('.');
  return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
}

/**
 * Server-name lookup table: exact names and "*.suffix" wildcards mapped to a
 * value (in the worker, a `tls.SecureContext`).
 *
 * `match` prefers an exact name over a wildcard and falls back to the default
 * value when nothing matches or the client sent no SNI. The default is the
 * one given to the constructor or `setDefault`, else the first value added,
 * as nginx does with the first server block of a listener.
 */
export class SniTable<T> {
  readonly #exact = new Map<string, T>();
  /** Keyed by the suffix after "*.", so one lookup serves a wildcard match. */
  readonly #wildcard = new Map<string, T>();
  #default: T | null;
  #defaultIsExplicit: boolean;

  constructor(defaultValue?: T) {
    this.#default = defaultValue ?? null;
    this.#defaultIsExplicit = defaultValue !== undefined;
  }

  /** Number of names added (the default does not count). */
  get size(): number {
    return this.#exact.size + this.#wildcard.size;
  }

  /** The value used when nothing matches, or null while the table is empty. */
  get defaultValue(): T | null {
    return this.#default;
  }

  /** Makes `value` the default, overriding the first-added rule. */
  setDefault(value: T): void {
    this.#default = value;
    this.#defaultIsExplicit = true;
  }

  /**
   * Adds `name` ("example.com" or "*.example.com").
   * @throws Error when the name is invalid (see `parseDnsName`) or already present,
   *   including spellings that differ only in case or a trailing dot.
   */
  add(name: string, value: T): void {
    const normalised = parseDnsName(name, true);
    if (normalised === null) throw new Error(`invalid TLS server name ${JSON.stringify(name)}`);
    const [table, key] = normalised.startsWith('*.') ? [this.#wildcard, normalised.slice(2)] : [this.#exact, normalised];
    if (table.has(key)) throw new Error(`TLS server name ${JSON.stringify(name)} is configured twice`);
    table.set(key, value);
    if (!this.#defaultIsExplicit && this.size === 1) this.#default = value;
  }

  /**
   * The value for the SNI `serverName` (undefined or empty when none was sent):
   * exact name first, then the wildcard for its parent, then the default.
   * A name that is not a valid host name gets the default; it never throws.
   */
  match(serverName: string | undefined): T | null {
    if (serverName === undefined || serverName === '') return this.#default;
    const name = parseDnsName(serverName, false);
    if (name === null) return this.#default;
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wildcard = this.#wildcard.get(name.slice(dot + 1));
      if (wildcard !== undefined) return wildcard;
    }
    return this.#default;
  }
}
