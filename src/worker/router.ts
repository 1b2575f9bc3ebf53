/**
 * Virtual host selection by the Host header: the first vhost
 * whose domains match wins, exact names and "*.suffix" wildcards in config
 * order, and "*" only when nothing else matched.
 */
import type { VhostSpec } from '../config/types.js';

/** Bound on remembered Host -> vhost answers; Host values are attacker-chosen. */
const CACHE_LIMIT = 1024;

export class VhostRouter<T> {
  private readonly entries: { domains: readonly string[]; value: T }[];
  private readonly fallback: T | null;
  private readonly cache = new Map<string, T | null>();

  constructor(vhosts: readonly { spec: VhostSpec; value: T }[]) {
    this.entries = vhosts.map(({ spec, value }) => ({ domains: spec.domains.filter((d) => d !== '*'), value }));
    this.fallback = vhosts.find(({ spec }) => spec.domains.includes('*'))?.value ?? null;
  }

  /** `host` is lower-case, without port. */
  match(host: string): T | null {
    const cached = this.cache.get(host);
    if (cached !== undefined) return cached;
    let found: T | null = this.fallback;
    outer: for (const entry of this.entries) {
      for (const domain of entry.domains) {
        // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com" (Caddy, nginx).
        if (domain === host || (domain.startsWith('*.') && host.endsWith(domain.slice(1)) && host.length > domain.length - 1)) {
          found = entry.value;
          break outer;
        }
      }
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(host, found);
    return found;
  }
}

/**
 * The host part of a Host header, lower-case, without port or trailing dot;
 * "" when absent. IPv6 literals keep their brackets.
 */
export function hostOf(header: string | undefined): string {
  if (!header) return '';
  // A keep-alive client names the same host on every request: the last answer is kept (one entry, whatever clients send).
  if (header === lastHostHeader) return lastHost;
  const host = hostPart(header);
  lastHostHeader = header;
  lastHost = host;
  return host;
}

let lastHostHeader = '';
let lastHost = '';

function hostPart(header: string): string {
  let host = header.toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    host = end === -1 ? host : host.slice(0, end + 1);
  } else {
    const colon = host.indexOf(':');
    if (colon !== -1) host = host.slice(0, colon);
  }
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
