// Over 400 lines: one walker of three header grammars (X-Forwarded-For, RFC 7239 Forwarded, single-address headers) sharing its caps and address cache.
/**
 * Client IP: who the client is, when a trusted proxy stands between us and
 * it. The answer keys rate limits, bans, the IDS, the audit log and the
 * `X-Real-IP` we send upstream, so the rules are strict and the output is
 * one canonical string per client.
 *
 * Trust model (nginx realip with `real_ip_recursive on`, Caddy
 * `trusted_proxies`): forwarding headers are read only when the peer (the TCP
 * peer, or the PROXY protocol source when one was accepted) is a trusted
 * proxy. Anything else a client sends is ignored. Behind a trusted proxy,
 * every header in client_ip_headers is believed as the proxy passes it on, so
 * list only headers that proxy sets or overwrites: one it forwards untouched
 * (a CF-Connecting-IP when the proxy is not Cloudflare) is the client's to
 * choose. A named proxy's header (CF-Connecting-IP for "cloudflare") is
 * believed only from that proxy's own addresses.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ForwardedSpec } from '../../config/types.js';
import { CidrSet, formatIp, isIpv4Mapped, parseIp } from '../../net/cidr.js';
import { HttpError } from '../errors.js';
import { memoBounded } from '../memo.js';
import type { ExchangeContext, Stage } from './stage.js';

export interface ClientIpPolicy {
  /** `[security.forwarded].trust_proxy` */
  readonly trustProxy: boolean;
  /** `trusted_proxies` */
  readonly trustedProxies: CidrSet;
  /** `trusted_hops`: at most this many X-Forwarded-For / Forwarded entries are walked. */
  readonly trustedHops: number;
  /** `client_ip_headers`, in priority order; names are case-insensitive. */
  readonly clientIpHeaders: readonly string[];
  /**
   * `reject_private_ip`: for servers that must only ever see public clients
   * (behind a CDN). With it on, loopback, LAN and link-local clients are
   * refused, local tests on 127.0.0.1 included, and so is a trusted proxy
   * that names no client.
   */
  readonly rejectPrivateIp: boolean;
  /** `require_proxy_headers`: a trusted proxy must name the client in one of the headers. */
  readonly requireProxyHeaders: boolean;
  /**
   * Headers of named proxies (`trusted_proxies = ["cloudflare"]`), each
   * believed only from its proxy's own addresses, before clientIpHeaders.
   */
  readonly namedProxyHeaders?: readonly { readonly header: string; readonly from: CidrSet }[];
}

export type ClientIpResult =
  /** `via`: the (lower-cased) header the address came from, or null for the peer itself. */
  { ok: true; clientIp: string; via: string | null } | { ok: false; reason: 'private_ip' | 'missing_proxy_headers'; clientIp: string };

/**
 * Only the last this-many characters of a list header are looked at, and a
 * single-value header longer than this is malformed. A tail window rather
 * than "ignore long headers" for lists: the left of X-Forwarded-For is the
 * client's to write, and padding it must not make us skip a header our own
 * proxy appended to (which would hand the choice to a lower-priority,
 * perhaps client-controlled, header).
 */
const MAX_HEADER_SCAN_CHARS = 8 * 1024;
/** Longest address form we accept: "[" IPv6 with IPv4 tail "]:" 5-digit port is 54. */
const MAX_NODE_CHARS = 64;
/** Hard cap on list entries walked, whatever trusted_hops says (the schema also caps it at 64). */
const MAX_WALKED_ENTRIES = 64;

type HeaderKind = 'x-forwarded-for' | 'forwarded' | 'single';
interface HeaderSource {
  readonly name: string;
  readonly kind: HeaderKind;
  /** Believed only from these peers (a named proxy's header); undefined: from any trusted proxy. */
  readonly from?: CidrSet;
}

/** Lower-cased header names per policy, computed once (policies are frozen config). */
const compiledSources = new WeakMap<ClientIpPolicy, readonly HeaderSource[]>();

function headerSources(policy: ClientIpPolicy): readonly HeaderSource[] {
  let sources = compiledSources.get(policy);
  if (sources === undefined) {
    const named = (policy.namedProxyHeaders ?? []).map(
      ({ header, from }): HeaderSource => ({ name: header.toLowerCase(), kind: 'single', from }),
    );
    sources = [
      ...named,
      ...policy.clientIpHeaders.map((header): HeaderSource => {
        const name = header.toLowerCase();
        const kind = name === 'x-forwarded-for' || name === 'forwarded' ? name : 'single';
        return { name, kind };
      }),
    ];
    compiledSources.set(policy, sources);
  }
  return sources;
}

const PEER_CACHE_ENTRIES = 4096;

/**
 * The peer's address, parsed once per address rather than once per request:
 * a keep-alive client sends many requests from one peer. Bounded: the
 * table starts over when full.
 */
const parsePeer = memoBounded(parseAddress, PEER_CACHE_ENTRIES);

/** Whether forwarding headers are read from this peer: trust_proxy is on and it is one of trusted_proxies. */
function isTrustedProxy(policy: ClientIpPolicy, peer: ParsedAddress): boolean {
  return policy.trustProxy && policy.trustedProxies.has(peer.text);
}

/**
 * Resolve the client address for one request.
 * `peerIp`: the TCP peer, or the PROXY protocol source when one was accepted.
 */
export function resolveClientIp(peerIp: string, headers: IncomingHttpHeaders, policy: ClientIpPolicy): ClientIpResult {
  const peer = parsePeer(peerIp);
  // A peer that is not an address at all (a Unix socket has none) is kept as
  // given: there is nothing better to key on, and it is never a trusted proxy.
  const peerText = peer?.text ?? peerIp;
  let clientIp = peerText;
  let clientBytes = peer?.bytes ?? null;
  let via: string | null = null;

  if (peer !== null && isTrustedProxy(policy, peer)) {
    let found: ParsedAddress | null = null;
    for (const source of headerSources(policy)) {
      const value = headers[source.name];
      if (value === undefined || (source.from !== undefined && !source.from.has(peer.text))) continue;
      found =
        source.kind === 'single' ? singleValue(value) : walkList(listTail(value), source.kind, policy.trustedProxies, policy.trustedHops);
      if (found !== null) {
        via = source.name;
        break;
      }
    }
    if (found !== null) {
      clientIp = found.text;
      clientBytes = found.bytes;
    } else if (policy.requireProxyHeaders) {
      return { ok: false, reason: 'missing_proxy_headers', clientIp: peerText };
    }
  }

  // Only public clients are expected: anything that is not a public address
  // (private, loopback, link-local, or not an address at all) is refused.
  if (policy.rejectPrivateIp && (clientBytes === null || isPrivateBytes(clientBytes))) {
    return { ok: false, reason: 'private_ip', clientIp };
  }
  return { ok: true, clientIp, via };
}

/**
 * Whether `ip` is a non-public address: RFC 1918, 100.64.0.0/10 (RFC 6598
 * CGNAT), 127.0.0.0/8, 169.254.0.0/16, 0.0.0.0/8, ::, ::1, fc00::/7,
 * fe80::/10, and IPv4-mapped IPv6 forms of the IPv4 ones. False for text that
 * is not an address.
 */
export function isPrivateIp(ip: string): boolean {
  const parsed = parseAddress(ip);
  return parsed !== null && isPrivateBytes(parsed.bytes);
}

// ---------------------------------------------------------------------------
// Addresses

interface ParsedAddress {
  /** Canonical text: dotted IPv4 (also for IPv4-mapped IPv6), RFC 5952 IPv6. */
  readonly text: string;
  /** 4 bytes for IPv4 (and IPv4-mapped IPv6), 16 for IPv6. */
  readonly bytes: Uint8Array;
}

/**
 * A bare address (no brackets, no port), canonicalised so that one client is
 * one string whatever spelling a proxy used: "::ffff:1.2.3.4" is "1.2.3.4",
 * "2001:DB8:0:0::1" is "2001:db8::1". Null when not strictly an address.
 */
function parseAddress(text: string): ParsedAddress | null {
  if (text.length === 0 || text.length > MAX_NODE_CHARS) return null;
  const parsed = parseIp(text); // strict: no zone id, no leading zeros
  if (parsed === null) return null;
  const bytes = isIpv4Mapped(parsed.bytes) ? parsed.bytes.subarray(12) : parsed.bytes;
  return { text: formatIp(bytes), bytes };
}

function isPrivateBytes(bytes: Uint8Array): boolean {
  if (isIpv4Mapped(bytes)) bytes = bytes.subarray(12);
  if (bytes.length === 4) {
    const [a, b] = [bytes[0]!, bytes[1]!];
    return (
      a === 10 || // 10.0.0.0/8         RFC 1918
      (a === 172 && (b & 0xf0) === 16) || // 172.16.0.0/12  RFC 1918
      (a === 192 && b === 168) || // 192.168.0.0/16     RFC 1918
      (a === 100 && (b & 0xc0) === 64) || // 100.64.0.0/10  RFC 6598 shared (CGNAT)
      a === 127 || // 127.0.0.0/8                        loopback
      (a === 169 && b === 254) || // 169.254.0.0/16      link-local
      a === 0 //  0.0.0.0/8 "this network", includes the unspecified address
    );
  }
  if (bytes.length !== 16) return false;
  if ((bytes[0]! & 0xfe) === 0xfc) return true; // fc00::/7  unique local (RFC 4193)
  if (bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80) return true; // fe80::/10  link-local
  for (let i = 0; i < 15; i++) if (bytes[i] !== 0) return false;
  return bytes[15] === 0 || bytes[15] === 1; // :: unspecified, ::1 loopback
}

/** Digits only, 1 to 5 of them, at most 65535 (RFC 3986 port as a proxy writes it). */
function isPort(text: string): boolean {
  if (text.length === 0 || text.length > 5) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return Number(text) <= 65535;
}

/**
 * An address as a forwarding header carries it: bare IPv4 or IPv6,
 * "[IPv6]", "[IPv6]:port", and, when `ipv4Port`, "IPv4:port". A bracketed
 * IPv4 or anything else is not an address.
 */
function parseNode(text: string, ipv4Port: boolean): ParsedAddress | null {
  if (text.length === 0 || text.length > MAX_NODE_CHARS) return null;
  if (text.charCodeAt(0) === 0x5b /* [ */) {
    const close = text.indexOf(']');
    if (close === -1) return null;
    const rest = text.slice(close + 1);
    if (rest.length > 0 && !(rest.charCodeAt(0) === 0x3a /* : */ && isPort(rest.slice(1)))) return null;
    const inner = text.slice(1, close);
    return inner.indexOf(':') === -1 ? null : parseAddress(inner); // brackets are for IPv6 only, not "[1.2.3.4]"
  }
  const colon = text.indexOf(':');
  if (ipv4Port && colon !== -1 && text.indexOf(':', colon + 1) === -1) {
    // Exactly one colon: only "IPv4:port" can mean that.
    if (!isPort(text.slice(colon + 1))) return null;
    const address = parseAddress(text.slice(0, colon));
    return address !== null && address.bytes.length === 4 ? address : null;
  }
  return parseAddress(text);
}

// ---------------------------------------------------------------------------
// Headers

const isOws = (c: number): boolean => c === 0x20 || c === 0x09;

function trimOws(text: string, from = 0, to = text.length): string {
  while (from < to && isOws(text.charCodeAt(from))) from++;
  while (to > from && isOws(text.charCodeAt(to - 1))) to--;
  return text.slice(from, to);
}

/**
 * CF-Connecting-IP, X-Real-IP, X-Client-IP, True-Client-IP and any other
 * header not known to be a list: exactly one address. A repeated header
 * (Node joins repeats with ", ", or an array) is malformed: two proxies
 * disagreeing, or a client's value that our proxy appended to.
 * "IPv4:port" is refused: these headers carry no port.
 */
function singleValue(value: string | string[]): ParsedAddress | null {
  if (typeof value !== 'string' || value.length > MAX_HEADER_SCAN_CHARS) return null;
  return parseNode(trimOws(value), false);
}

/**
 * The part of a list header we will look at, and where it was cut: the walk
 * runs from the right, so only the tail matters. A line-per-value array (not
 * what Node's `headers` gives, but possible) is joined as HTTP would.
 */
function listTail(value: string | string[]): { readonly text: string; readonly cut: boolean } {
  let text: string;
  if (typeof value === 'string') {
    text = value;
  } else {
    const parts: string[] = [];
    let length = 0;
    for (let i = value.length - 1; i >= 0 && length <= MAX_HEADER_SCAN_CHARS; i--) {
      parts.push(value[i]!);
      length += value[i]!.length + 1;
    }
    text = parts.reverse().join(',');
    if (parts.length < value.length) text = `,${text}`; // anything cut off lies before a boundary
  }
  if (text.length <= MAX_HEADER_SCAN_CHARS) return { text, cut: false };
  return { text: text.slice(text.length - MAX_HEADER_SCAN_CHARS), cut: true };
}

/**
 * Walk X-Forwarded-For or Forwarded right to left, from the entry our peer
 * appended towards the client:
 *
 * - empty list elements are skipped (RFC 9110 §5.6.1) and do not count;
 * - each entry walked counts one hop; at most `trustedHops` are walked;
 * - the first entry that is not a trusted proxy is the client;
 * - when every walked entry is trusted and the hops run out, the client is
 *   the last (leftmost) entry walked;
 * - an entry that is not an address (garbage, Forwarded "unknown" or an
 *   obfuscated "_id", an element without for=, an entry cut by the scan
 *   window) ends the walk, and the client is the last address walked: the
 *   hop that reported it. That is what nginx realip does with
 *   real_ip_recursive on (an unparsable entry leaves the last trusted
 *   address), and it keeps the client-written left part from disqualifying
 *   the whole header. When the very first entry is not an address, the
 *   header yields nothing and the next header is tried.
 *
 * trusted_hops = 0 therefore means lists are never believed.
 */
function walkList(
  list: { readonly text: string; readonly cut: boolean },
  kind: 'x-forwarded-for' | 'forwarded',
  trustedProxies: CidrSet,
  trustedHops: number,
): ParsedAddress | null {
  const { text } = list;
  const hops = Math.min(trustedHops, MAX_WALKED_ENTRIES);
  let client: ParsedAddress | null = null;
  let end = text.length;
  for (let walked = 0; walked < hops; walked++) {
    while (end > 0 && (isOws(text.charCodeAt(end - 1)) || text.charCodeAt(end - 1) === 0x2c)) end--;
    if (end === 0) break; // the list is exhausted
    const start = kind === 'x-forwarded-for' ? text.lastIndexOf(',', end - 1) + 1 : forwardedElementStart(text, end);
    if (start === 0 && list.cut) break; // the entry runs past the window: not one we can read
    const entry = trimOws(text, start, end);
    const address = kind === 'x-forwarded-for' ? parseNode(entry, true) : forwardedFor(entry);
    if (address === null) break;
    client = address;
    if (!trustedProxies.has(address.text)) break;
    end = start;
  }
  return client;
}

// RFC 7239 §4: Forwarded = 1#forwarded-element
//   forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//   forwarded-pair = token "=" value ; value = token / quoted-string
// RFC 9110 §5.6.2 token, §5.6.4 quoted-string.

const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
const isTchar = (c: number): boolean => c < 128 && TCHAR[c] === 1;

/**
 * Where the element ending at `end` starts: after the nearest comma to the
 * left that is outside a quoted-string. Scanning right to left, a quote
 * closes (opens, read forwards) a quoted-string unless an odd run of
 * backslashes escapes it. Linear: each backslash run is counted once.
 */
function forwardedElementStart(text: string, end: number): number {
  let inQuote = false;
  let i = end;
  for (; i > 0; i--) {
    const c = text.charCodeAt(i - 1);
    if (c === 0x22 /* " */) {
      if (!inQuote) {
        inQuote = true;
        continue;
      }
      let backslashes = 0;
      while (i - 2 - backslashes >= 0 && text.charCodeAt(i - 2 - backslashes) === 0x5c) backslashes++;
      if (backslashes % 2 === 0) inQuote = false;
    } else if (c === 0x2c /* , */ && !inQuote) {
      break;
    }
  }
  return i;
}

/**
 * The for= node of one forwarded-element, as an address; null when the
 * element is malformed (bad syntax, a repeated parameter, RFC 7239 §4), has
 * no for=, or its node is "unknown", obfuscated, or an unbracketed IPv6
 * (RFC 7239 §6). OWS around ";" is tolerated.
 */
function forwardedFor(element: string): ParsedAddress | null {
  const seen = new Set<string>();
  let node: string | null = null;
  let i = 0;
  const n = element.length;
  while (i < n) {
    while (i < n && isOws(element.charCodeAt(i))) i++;
    if (i < n && element.charCodeAt(i) === 0x3b /* ; */) {
      i++;
      continue;
    }
    if (i === n) break;
    const nameStart = i;
    while (i < n && isTchar(element.charCodeAt(i))) i++;
    if (i === nameStart || i === n || element.charCodeAt(i) !== 0x3d /* = */) return null;
    const name = element.slice(nameStart, i).toLowerCase();
    if (seen.has(name)) return null;
    seen.add(name);
    i++;
    let value: string;
    if (i < n && element.charCodeAt(i) === 0x22) {
      // Copy runs between escapes as slices: most values have no escape at all.
      let unquoted = '';
      let runStart = ++i;
      let closed = false;
      for (; i < n; i++) {
        const c = element.charCodeAt(i);
        if (c === 0x22) {
          closed = true;
          break;
        }
        const escaped = c === 0x5c;
        if (escaped) {
          unquoted += element.slice(runStart, i);
          runStart = ++i;
          if (i === n) return null;
        }
        const text = escaped ? element.charCodeAt(i) : c;
        // qdtext and quoted-pair: HTAB, SP, visible ASCII, obs-text; no other controls.
        if (!(text === 0x09 || (text >= 0x20 && text !== 0x7f))) return null;
      }
      if (!closed) return null;
      value = unquoted + element.slice(runStart, i);
      i++;
    } else {
      const valueStart = i;
      while (i < n && isTchar(element.charCodeAt(i))) i++;
      if (i === valueStart) return null;
      value = element.slice(valueStart, i);
    }
    while (i < n && isOws(element.charCodeAt(i))) i++;
    if (i < n && element.charCodeAt(i) !== 0x3b) return null;
    if (name === 'for') node = value;
  }
  return node === null ? null : forwardedNode(node);
}

/** RFC 7239 §6: node = nodename [ ":" node-port ]; only IPv4 and "[IPv6]" name an address. */
function forwardedNode(node: string): ParsedAddress | null {
  if (node.length === 0 || node.length > MAX_NODE_CHARS) return null;
  if (node.charCodeAt(0) === 0x5b) {
    const close = node.indexOf(']');
    if (close === -1) return null;
    const port = node.slice(close + 1);
    if (port.length > 0 && !(port.charCodeAt(0) === 0x3a && isNodePort(port.slice(1)))) return null;
    const inner = node.slice(1, close);
    return inner.indexOf(':') === -1 ? null : parseAddress(inner);
  }
  // "unknown" and "_obfuscated" name no address. An unbracketed IPv6 fails
  // here too: what follows its first colon is not a port.
  const colon = node.indexOf(':');
  if (colon !== -1 && !isNodePort(node.slice(colon + 1))) return null;
  const address = parseAddress(colon === -1 ? node : node.slice(0, colon));
  return address !== null && address.bytes.length === 4 ? address : null;
}

/** node-port = port / obfport; obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-") */
function isNodePort(text: string): boolean {
  if (text.charCodeAt(0) !== 0x5f) return isPort(text);
  if (text.length < 2 || text.length > 32) return false;
  for (let i = 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2e || c === 0x5f || c === 0x2d;
    if (!ok) return false;
  }
  return true;
}

/**
 * The client-IP stage: resolves `ctx.clientIp` for every later stage and
 * the upstream's X-Real-IP. Refuses a private client (403) or a trusted
 * proxy that names none (400) when the config asks for that.
 */
export function clientIpStage(forwarded: ForwardedSpec): Stage {
  const policy: ClientIpPolicy = Object.freeze({
    trustProxy: forwarded.trustProxy,
    trustedProxies: new CidrSet(forwarded.trustedProxies),
    trustedHops: forwarded.trustedHops,
    clientIpHeaders: forwarded.clientIpHeaders,
    rejectPrivateIp: forwarded.rejectPrivateIp,
    requireProxyHeaders: forwarded.requireProxyHeaders,
    namedProxyHeaders: forwarded.namedProxyHeaders.map(({ header, from }) => ({ header, from: new CidrSet(from) })),
  });
  /**
   * What the policy says of each peer, once per peer address rather than
   * once per request (a keep-alive client sends many from one peer); the
   * peer object is shared by its requests, read-only. Bounded like the
   * parsed addresses: the table starts over when full.
   */
  const peerOf = memoBounded((peerIp: string): NonNullable<ExchangeContext['peer']> => {
    const parsed = parsePeer(peerIp);
    return Object.freeze({
      ip: parsed?.text ?? peerIp,
      trustedProxy: parsed !== null && isTrustedProxy(policy, parsed),
    });
  }, PEER_CACHE_ENTRIES);
  return {
    name: 'client-ip',
    onRequest({ req, ctx, peerIp }) {
      const peer = peerOf(peerIp);
      ctx.peer = peer;
      // No forwarding header is read from a peer that is not a trusted proxy: the client is the peer.
      if (!peer.trustedProxy && !policy.rejectPrivateIp) {
        ctx.clientIp = peer.ip;
        return;
      }
      const result = resolveClientIp(peerIp, req.headers, policy);
      ctx.clientIp = result.clientIp;
      if (!result.ok) {
        throw new HttpError(result.reason === 'private_ip' ? 'PRIVATE_CLIENT_IP' : 'MISSING_PROXY_HEADERS', result.clientIp);
      }
    },
  };
}
