/**
 * Where the server listens: [server] listen / listen_tls (or bind_address
 * with http_port / https_port), the metrics and the dashboard, compiled
 * into ListenerSpec entries, and the addresses that cannot all be bound.
 *
 * Two listeners overlap when one port is bound at the same address twice,
 * or at a wildcard address and at an address that wildcard covers: Linux
 * refuses the second bind with EADDRINUSE (0.0.0.0:80 then 127.0.0.1:80),
 * and "::" covers IPv4 too, since the master binds IPv6 sockets dual-stack
 * (IPV6_V6ONLY off, ipv6(7)). `check` names both keys.
 */
import { isIP } from 'node:net';
import { parseListenAddress } from './dashboard.js';
import type { ConfigProblem } from './problem.js';
import type { RawConfig } from './schema.js';
import type { DashboardSpec, ListenerSpec, Protocol, TlsSpec } from './types.js';

/** One address to listen on, and the key that asked for it. */
interface Wanted {
  readonly key: string;
  readonly purpose: ListenerSpec['purpose'];
  readonly protocol: Protocol;
  readonly address: string;
  readonly port: number;
}

/** "127.0.0.1:8080", "[::1]:8080". */
export function formatHostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

function parseList(key: string, list: readonly string[], protocol: Protocol, problems: ConfigProblem[]): Wanted[] {
  const wanted: Wanted[] = [];
  list.forEach((text, i) => {
    const parsed = parseListenAddress(text);
    if (parsed === null) {
      problems.push({
        key: `${key}[${i}]`,
        message: 'expected "address:port" with an IP address, such as "127.0.0.1:8080", "0.0.0.0:80" or "[::1]:8080"',
      });
      return;
    }
    wanted.push({ key: `${key}[${i}]`, purpose: 'sites', protocol, ...parsed });
  });
  return wanted;
}

const isWildcard = (address: string): boolean => address === '0.0.0.0' || address === '::';

/** Whether binding both would fail (see the file comment). */
function overlaps(a: Wanted, b: Wanted): boolean {
  if (a.port !== b.port) return false;
  if (a.address === b.address) return true;
  const familyA = isIP(a.address);
  const familyB = isIP(b.address);
  if (a.address === '::' || b.address === '::') return true; // dual-stack: every address of both families
  return familyA === familyB && (isWildcard(a.address) || isWildcard(b.address));
}

export function compileListeners(
  raw: RawConfig,
  tls: TlsSpec | null,
  dashboard: DashboardSpec | null,
  problems: ConfigProblem[],
): ListenerSpec[] {
  const server = raw.server;
  const wanted: Wanted[] = [];
  if (server.listen !== undefined) wanted.push(...parseList('server.listen', server.listen, 'http', problems));
  else wanted.push({ key: 'server.http_port', purpose: 'sites', protocol: 'http', address: server.bind_address, port: server.http_port });
  if (tls === null) {
    if (server.listen_tls !== undefined)
      problems.push({ key: 'server.listen_tls', message: 'needs [ssl]: certificates to serve HTTPS with' });
  } else if (server.listen_tls !== undefined) wanted.push(...parseList('server.listen_tls', server.listen_tls, 'https', problems));
  else
    wanted.push({ key: 'server.https_port', purpose: 'sites', protocol: 'https', address: server.bind_address, port: server.https_port });
  if (server.metrics.enabled) {
    const { bind_address: address, port } = server.metrics;
    wanted.push({ key: 'server.metrics.port', purpose: 'metrics', protocol: 'http', address, port });
  }
  if (dashboard !== null) {
    const { address, port } = dashboard;
    wanted.push({ key: 'server.dashboard.listen', purpose: 'dashboard', protocol: 'http', address, port });
  }

  const listeners: ListenerSpec[] = [];
  for (const [i, entry] of wanted.entries()) {
    const earlier = wanted.slice(0, i).find((other) => isIP(other.address) !== 0 && overlaps(other, entry));
    if (earlier !== undefined && isIP(entry.address) !== 0) {
      const here = formatHostPort(entry.address, entry.port);
      const there = formatHostPort(earlier.address, earlier.port);
      problems.push({
        key: entry.key,
        message:
          here === there
            ? `${here} is also ${earlier.key}: each address and port can be listened on once`
            : `${here} overlaps ${there} (${earlier.key}): a wildcard address covers the other, so both cannot be bound`,
      });
      continue;
    }
    const kind = entry.purpose === 'sites' ? entry.protocol : entry.purpose;
    listeners.push({
      id: `${kind} ${formatHostPort(entry.address, entry.port)}`,
      purpose: entry.purpose,
      protocol: entry.protocol,
      address: entry.address,
      port: entry.port,
    });
  }
  return listeners;
}

/** The port HTTPS redirects and TLS-ALPN-01 go to: the first HTTPS listener's. */
export function httpsPortOf(raw: RawConfig): number {
  const first = raw.server.listen_tls?.[0];
  return (first === undefined ? null : parseListenAddress(first)?.port) ?? raw.server.https_port;
}

const portsOf = (list: readonly string[]): number[] =>
  list.flatMap((text) => {
    const parsed = parseListenAddress(text);
    return parsed === null ? [] : [parsed.port];
  });

/** The ports plain HTTP is served on (HTTP-01 challenges must arrive on one of them). */
export function httpPortsOf(raw: RawConfig): number[] {
  return raw.server.listen === undefined ? [raw.server.http_port] : portsOf(raw.server.listen);
}

/** The ports HTTPS is served on (TLS-ALPN-01 challenges must arrive on one of them). */
export function httpsPortsOf(raw: RawConfig): number[] {
  return raw.server.listen_tls === undefined ? [raw.server.https_port] : portsOf(raw.server.listen_tls);
}
