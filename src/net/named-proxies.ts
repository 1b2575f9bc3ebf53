/**
 * Proxies an operator may name in `[security.forwarded] trusted_proxies`
 * instead of listing their addresses: `trusted_proxies = ["cloudflare"]`
 * says "this server is behind Cloudflare". The name stands for the
 * provider's published address ranges, and for the one header the provider
 * sets for the client (overwriting whatever the client sent), believed only
 * from those addresses: CF-Connecting-IP from anyone else is the client's
 * own word, which is why no such header is in the default client_ip_headers.
 */

export interface NamedProxy {
  /** Where the ranges are published, and when they were copied from there. */
  readonly source: string;
  readonly ranges: readonly string[];
  /** The header the provider sets to the client's address, believed only from `ranges`. */
  readonly clientIpHeader: string;
}

export const NAMED_PROXIES: Readonly<Record<string, NamedProxy>> = {
  cloudflare: {
    source: 'https://www.cloudflare.com/ips-v4 and /ips-v6, as of 2025-06',
    ranges: [
      '173.245.48.0/20',
      '103.21.244.0/22',
      '103.22.200.0/22',
      '103.31.4.0/22',
      '141.101.64.0/18',
      '108.162.192.0/18',
      '190.93.240.0/20',
      '188.114.96.0/20',
      '197.234.240.0/22',
      '198.41.128.0/17',
      '162.158.0.0/15',
      '104.16.0.0/13',
      '104.24.0.0/14',
      '172.64.0.0/13',
      '131.0.72.0/22',
      '2400:cb00::/32',
      '2606:4700::/32',
      '2803:f800::/32',
      '2405:b500::/32',
      '2405:8100::/32',
      '2a06:98c0::/29',
      '2c0f:f248::/32',
    ],
    clientIpHeader: 'CF-Connecting-IP',
  },
};

/** The named proxy `entry` stands for (case-insensitive), or null for an address or CIDR. */
export function namedProxy(entry: string): NamedProxy | null {
  return Object.hasOwn(NAMED_PROXIES, entry.toLowerCase()) ? NAMED_PROXIES[entry.toLowerCase()]! : null;
}
