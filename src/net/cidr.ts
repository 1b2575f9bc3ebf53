/**
 * IP addresses and CIDR sets: one strict parser for every place that matches
 * a peer against a list (PROXY protocol trusted_proxies, forwarded-header
 * trust, access lists).
 *
 * Addresses are parsed by full-string rules, never by the lenient C
 * inet_aton family: "01.2.3.4" is rejected because leading zeros read as octal
 * to some parsers (CVE-2021-29921 in Python's ipaddress, the Node `netmask`
 * package, CVE-2021-28918), so two components would disagree about which host is meant.
 */
import { isIP } from 'node:net';

export type IpFamily = 4 | 6;

/** A parsed address: 4 bytes for IPv4, 16 for IPv6, network byte order. */
export interface ParsedIp {
  family: IpFamily;
  bytes: Uint8Array;
}

/** A parsed CIDR entry; IPv4-mapped IPv6 entries (::ffff:0:0/96 and longer) are stored as IPv4. */
export interface ParsedCidr {
  family: IpFamily;
  /** The network address, host bits cleared. */
  network: Uint8Array;
  prefixLength: number;
}

/** "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is the longest RFC 4291 text form. */
const MAX_IP_TEXT_CHARS = 45;
/** RFC 791 dotted quad, each part decimal without leading zeros (see the module comment). */
const IPV4_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
/** RFC 4291 §2.2: one to four hex digits per 16-bit group. */
const IPV6_GROUP = /^[0-9A-Fa-f]{1,4}$/;
const PREFIX_LENGTH = /^(?:0|[1-9][0-9]{0,2})$/;

function parseIpv4Into(text: string, out: Uint8Array, offset: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!IPV4_OCTET.test(part)) return false;
    const value = Number(part);
    if (value > 255) return false;
    out[offset + i] = value;
  }
  return true;
}

/** Hex groups (and, when allowed, a trailing dotted quad worth two groups) as 16-bit words. */
function ipv6Words(groups: readonly string[], ipv4TailAllowed: boolean): number[] | null {
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i]!;
    if (IPV6_GROUP.test(group)) {
      words.push(Number(`0x${group}`));
    } else if (ipv4TailAllowed && i === groups.length - 1 && group.includes('.')) {
      // RFC 4291 §2.2 form 3: x:x:x:x:x:x:d.d.d.d, the dotted quad as the low 32 bits.
      const quad = new Uint8Array(4);
      if (!parseIpv4Into(group, quad, 0)) return null;
      words.push((quad[0]! << 8) | quad[1]!, (quad[2]! << 8) | quad[3]!);
    } else {
      return null;
    }
  }
  return words;
}

function parseIpv6(text: string): ParsedIp | null {
  // Zone ids ("fe80::1%eth0") name an interface, not an address: never a match key.
  if (text.includes('%')) return null;
  const gap = text.indexOf('::');
  if (gap !== -1 && text.indexOf('::', gap + 1) !== -1) return null; // at most one "::" (RFC 4291 §2.2 form 2)
  const head = gap === -1 ? text : text.slice(0, gap);
  const tail = gap === -1 ? '' : text.slice(gap + 2);
  const headWords = head === '' ? [] : ipv6Words(head.split(':'), gap === -1);
  const tailWords = tail === '' ? [] : ipv6Words(tail.split(':'), true);
  if (headWords === null || tailWords === null) return null;
  if (gap === -1 && headWords.length !== 8) return null;
  // "::" stands for one or more zero groups (RFC 4291 §2.2), so at most 7 written.
  if (gap !== -1 && headWords.length + tailWords.length > 7) return null;
  const words = [...headWords, ...new Array<number>(8 - headWords.length - tailWords.length).fill(0), ...tailWords];
  const bytes = new Uint8Array(16);
  words.forEach((word, i) => {
    bytes[2 * i] = word >> 8;
    bytes[2 * i + 1] = word & 0xff;
  });
  return { family: 6, bytes };
}

/**
 * Strictly parses an IPv4 dotted quad (no leading zeros, octets 0..255) or an
 * RFC 4291 IPv6 text form ("::", embedded dotted quad; no zone id). Returns
 * null for anything else. node:net isIP is only a first filter; the bytes are
 * computed here.
 */
export function parseIp(text: string): ParsedIp | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_IP_TEXT_CHARS) return null;
  const family = isIP(text);
  if (family === 4) {
    const bytes = new Uint8Array(4);
    return parseIpv4Into(text, bytes, 0) ? { family: 4, bytes } : null;
  }
  if (family === 6) return parseIpv6(text);
  return null;
}

/** True for ::ffff:a.b.c.d (RFC 4291 §2.5.5.2), the form dual-stack sockets report IPv4 peers in. */
export function isIpv4Mapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * Canonical text of 4 or 16 address bytes: dotted quad, or RFC 5952 IPv6
 * (lower case, no leading zeros, the first longest run of two or more zero
 * groups as "::", IPv4-mapped addresses as ::ffff:a.b.c.d per §5).
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  if (isIpv4Mapped(bytes)) return `::ffff:${formatIp(bytes.subarray(12))}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 1; // RFC 5952 §4.2.2: a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end;
  }
  const hex = (from: number, to: number): string =>
    groups
      .slice(from, to)
      .map((group) => group.toString(16))
      .join(':');
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/**
 * Parses "a.b.c.d/n", "x::/n" or a bare address (a /32 or /128). Host bits
 * below the prefix are cleared ("10.1.2.3/8" is 10.0.0.0/8, as in Go's
 * net.ParseCIDR and haproxy): the match is the same either way. Returns null
 * when the text is not strictly one of those forms.
 */
export function parseCidr(text: string): ParsedCidr | null {
  if (typeof text !== 'string') return null;
  const slash = text.indexOf('/');
  const address = parseIp(slash === -1 ? text : text.slice(0, slash));
  if (address === null) return null;
  const maxPrefix = address.family === 4 ? 32 : 128;
  let prefixLength = maxPrefix;
  if (slash !== -1) {
    const digits = text.slice(slash + 1);
    if (!PREFIX_LENGTH.test(digits)) return null;
    prefixLength = Number(digits);
    if (prefixLength > maxPrefix) return null;
  }
  let { family, bytes } = address;
  // ::ffff:0:0/96 and longer describe IPv4 hosts; store them as IPv4 so that
  // "::ffff:10.0.0.0/104" and "10.0.0.0/8" are the same entry.
  if (family === 6 && prefixLength >= 96 && isIpv4Mapped(bytes)) {
    family = 4;
    bytes = bytes.slice(12);
    prefixLength -= 96;
  }
  const network = new Uint8Array(bytes);
  for (let bit = prefixLength; bit < network.length * 8; bit++) network[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { family, network, prefixLength };
}

/** The config validator's question, answered by the same parser CidrSet uses. */
export function isValidCidr(text: string): boolean {
  return parseCidr(text) !== null;
}

/** A 32-bit mask with the top `bits` bits set (bits 0..32). */
function mask32(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

function word32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

/**
 * A set of IPv4/IPv6 networks. Masks are precomputed at construction, so
 * `has` is one strict parse plus a few 32-bit compares per entry.
 *
 * IPv4-mapped addresses (::ffff:a.b.c.d, what a dual-stack listener reports
 * for IPv4 peers) are matched as the IPv4 address they carry, against IPv4
 * entries. IPv6 entries match only native IPv6 addresses: "::/0" does not
 * match IPv4 peers, however they are written.
 */
export class CidrSet {
  /** Pairs (network, mask) per IPv4 entry. */
  readonly #ipv4: Uint32Array;
  /** Eight words (4 network, 4 mask) per IPv6 entry. */
  readonly #ipv6: Uint32Array;
  readonly size: number;

  /** Throws RangeError naming the first entry that is not an address or CIDR. */
  constructor(entries: readonly string[]) {
    const ipv4: number[] = [];
    const ipv6: number[] = [];
    for (const entry of entries) {
      const cidr = parseCidr(entry);
      if (cidr === null) throw new RangeError(`not an IP address or CIDR: ${JSON.stringify(entry)}`);
      if (cidr.family === 4) {
        ipv4.push(word32(cidr.network, 0), mask32(cidr.prefixLength));
      } else {
        const words = [0, 4, 8, 12].map((offset) => word32(cidr.network, offset));
        const masks = [0, 32, 64, 96].map((start) => mask32(cidr.prefixLength - start));
        ipv6.push(...words, ...masks);
      }
    }
    this.#ipv4 = Uint32Array.from(ipv4);
    this.#ipv6 = Uint32Array.from(ipv6);
    this.size = entries.length;
  }

  /** True when `ip` (an address in text form) lies in one of the entries; false for anything that is not strictly an address. */
  has(ip: string): boolean {
    // Nothing to match (the usual whitelist and blacklist): no address to parse.
    if (this.size === 0) return false;
    const parsed = parseIp(ip);
    if (parsed === null) return false;
    const { bytes } = parsed;
    if (parsed.family === 4 || isIpv4Mapped(bytes)) {
      const address = word32(bytes, bytes.length - 4);
      const table = this.#ipv4;
      for (let i = 0; i < table.length; i += 2) {
        if ((address & table[i + 1]!) >>> 0 === table[i]) return true;
      }
      return false;
    }
    const a0 = word32(bytes, 0);
    const a1 = word32(bytes, 4);
    const a2 = word32(bytes, 8);
    const a3 = word32(bytes, 12);
    const table = this.#ipv6;
    for (let i = 0; i < table.length; i += 8) {
      if (
        (a0 & table[i + 4]!) >>> 0 === table[i] &&
        (a1 & table[i + 5]!) >>> 0 === table[i + 1] &&
        (a2 & table[i + 6]!) >>> 0 === table[i + 2] &&
        (a3 & table[i + 7]!) >>> 0 === table[i + 3]
      ) {
        return true;
      }
    }
    return false;
  }
}

/**
 * The one text form of an address that limits and bans key on: canonical
 * (formatIp), with IPv4-mapped IPv6 unwrapped to the IPv4 address it
 * carries, so one client is one key whichever listener it came through.
 * Null for text that is not strictly an address.
 */
export function clientKey(text: string): string | null {
  const parsed = parseIp(text);
  if (parsed === null) return null;
  return formatIp(isIpv4Mapped(parsed.bytes) ? parsed.bytes.subarray(12) : parsed.bytes);
}
