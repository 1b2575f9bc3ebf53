/**
 * PROXY protocol v1 and v2, the first stage a connection meets (before any
 * HTTP byte is parsed). Follows haproxy's doc/proxy-protocol.txt strictly,
 * not the leniency of existing receivers: no leading-zero octets, no port
 * 65536, single spaces, CRLF only, defined v2 commands and families only.
 *
 * Two layers:
 *   - parseProxyHeader (this file): pure and incremental. Given whatever prefix of the
 *     stream has arrived, it answers need-more / absent / done / invalid, and
 *     its answer for a prefix never contradicts its answer for a longer one
 *     (the tests feed every split point).
 *   - readProxyHeader (proxy-protocol-reader.ts): the connection wrapper. Reads from a fresh socket until
 *     the parser decides, applies the trust policy, and pushes every byte
 *     after the header back into the socket for the HTTP parser.
 *
 * Bounds (why these numbers):
 *   - v1: 107 bytes including CRLF (§2.1: the worst case is
 *     "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n").
 *   - v2: 16 fixed bytes plus the declared length; the spec allows up to
 *     16 + 65535, we accept at most DEFAULT_MAX_PROXY_HEADER_BYTES (4096)
 *     in total, configurable within [V2_MIN_CAP_BYTES, 16 + 65535]. Real
 *     senders (haproxy, AWS/GCP load balancers) send a few hundred bytes of
 *     TLVs; a larger block is refused as invalid as soon as the length field
 *     is read, without waiting for its bytes.
 *   - timeoutMs is the caller's; §2 asks for "at least 3 seconds to cover a
 *     TCP retransmit".
 *
 * Deliberate choices where the document leaves room:
 *   - v2 DGRAM families under PROXY are refused (we serve TCP only; §2.2 lets
 *     a receiver reject what it treats as UNSPEC).
 *   - v1 TCP6 addresses are read as RFC 4291 text (1-4 hex digits per group,
 *     embedded dotted quad as inet_ntop writes ::ffff:a.b.c.d), which is what
 *     senders emit; no zone ids. Addresses are returned canonicalised.
 *   - PP2_TYPE_CRC32C (§2.2.3) is verified when present; other TLVs skipped.
 *   - "proxy " in any other case is malformed rather than plain HTTP, so a
 *     misconfigured sender is refused instead of reaching the HTTP parser.
 *   - With `required: false` a trusted peer may omit the header. §2 says a
 *     receiver "MUST not try to guess whether the protocol header is
 *     present" (and §5: rely "only on a configuration parameter"); that
 *     guessing is the config's explicit choice
 *     (security.proxy_protocol.required), and untrusted peers can never
 *     use the protocol either way.
 */
import { formatIp, parseIp } from '../../net/cidr.js';

export type ProxyHeader =
  | { kind: 'proxy'; version: 1 | 2; family: 'tcp4' | 'tcp6'; sourceIp: string; sourcePort: number; destIp: string; destPort: number }
  /** v2 LOCAL command (health checks from the proxy itself): use the real peer address. */
  | { kind: 'local'; version: 2 }
  /** v1 "PROXY UNKNOWN", v2 AF_UNSPEC or AF_UNIX: use the real peer address. */
  | { kind: 'unknown'; version: 1 | 2 };

export type ParseResult =
  /** Not enough bytes yet to decide. */
  | { state: 'need-more' }
  /** The bytes cannot be a PROXY header (plain HTTP). */
  | { state: 'absent' }
  /** Header parsed; the first `consumed` bytes belong to it, the rest to the application. */
  | { state: 'done'; header: ProxyHeader; consumed: number }
  /** A PROXY header, malformed. */
  | { state: 'invalid'; reason: string };

/** §2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver should declare the line invalid." */
export const V1_MAX_HEADER_BYTES = 107;
/** §2.2: signature (12), ver_cmd, fam, len (2). */
export const V2_FIXED_HEADER_BYTES = 16;
/** Our cap on a whole v2 header (fixed part + addresses + TLVs); see the module comment. */
export const DEFAULT_MAX_PROXY_HEADER_BYTES = 4096;
/** A cap must at least fit a v2 AF_UNIX address block (216 bytes) with no TLVs. */
export const V2_MIN_CAP_BYTES = V2_FIXED_HEADER_BYTES + 216;
/** §2.2: the length field is 16 bits. */
export const V2_MAX_HEADER_BYTES = V2_FIXED_HEADER_BYTES + 0xffff;

/** §2.1: the v1 line starts with "PROXY" and a single space. */
const V1_SIGNATURE = Buffer.from('PROXY ', 'latin1');
/** §2.2: \r\n\r\n\0\r\nQUIT\n, chosen so that it can never start a valid HTTP/1 request or v1 line. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;

const NEED_MORE: ParseResult = Object.freeze({ state: 'need-more' });
const ABSENT: ParseResult = Object.freeze({ state: 'absent' });
const invalid = (reason: string): ParseResult => ({ state: 'invalid', reason });

/** §2.2 byte 13, high nibble: the only version this document defines for the binary format. */
const V2_VERSION = 0x2;
/** §2.2 byte 13, low nibble. "Other values are unassigned and must not be emitted by senders. Receivers must drop connections presenting unexpected values here." */
const V2_COMMAND_LOCAL = 0x0;
const V2_COMMAND_PROXY = 0x1;

/**
 * §2.2 byte 14: the seven defined family/transport combinations, with the
 * size of their address block. "Other values are unspecified and must not be
 * emitted in version 2 of this protocol and must be rejected as invalid by
 * receivers."
 */
const V2_FAMILIES: ReadonlyMap<number, { name: string; addressBytes: number; datagram: boolean }> = new Map([
  [0x00, { name: 'UNSPEC', addressBytes: 0, datagram: false }],
  [0x11, { name: 'TCP over IPv4', addressBytes: 12, datagram: false }],
  [0x12, { name: 'UDP over IPv4', addressBytes: 12, datagram: true }],
  [0x21, { name: 'TCP over IPv6', addressBytes: 36, datagram: false }],
  [0x22, { name: 'UDP over IPv6', addressBytes: 36, datagram: true }],
  [0x31, { name: 'UNIX stream', addressBytes: 216, datagram: false }],
  [0x32, { name: 'UNIX datagram', addressBytes: 216, datagram: true }],
]);
const V2_FAMILY_UNSPEC = 0x00;
const V2_FAMILY_TCP4 = 0x11;
const V2_FAMILY_TCP6 = 0x21;

/** §2.1: ports are decimal in [0..65535], "heading zeroes are not permitted". */
const V1_PORT = /^(?:0|[1-9][0-9]{0,4})$/;

/** Throws unless `maxHeaderBytes` is a cap a v2 header can be held to (a caller bug, never input). */
export function checkMaxHeaderBytes(maxHeaderBytes: number): void {
  if (!Number.isInteger(maxHeaderBytes) || maxHeaderBytes < V2_MIN_CAP_BYTES || maxHeaderBytes > V2_MAX_HEADER_BYTES) {
    throw new RangeError(`maxHeaderBytes must be an integer in [${V2_MIN_CAP_BYTES}, ${V2_MAX_HEADER_BYTES}], got ${maxHeaderBytes}`);
  }
}

/**
 * Parses the PROXY header at the start of `buffer`, which may be any prefix
 * of the stream. Never throws on input bytes and never reads past the header
 * it reports. `maxHeaderBytes` caps a v2 header (default 4096; v1 is always
 * capped at 107 by the spec).
 */
export function parseProxyHeader(buffer: Buffer, maxHeaderBytes: number = DEFAULT_MAX_PROXY_HEADER_BYTES): ParseResult {
  checkMaxHeaderBytes(maxHeaderBytes);
  if (buffer.length === 0) return NEED_MORE;
  // The two signatures differ in their first byte, so one byte picks the
  // candidate and anything else is plain HTTP at once (no delay for clients).
  if (buffer[0] === CR) return parseV2(buffer, maxHeaderBytes);
  if ((buffer[0]! | 0x20) === 0x70 /* 'P' or 'p' */) return parseV1(buffer);
  return ABSENT;
}

/** True once the stream has shown a complete v1 or v2 signature (used to refuse untrusted senders early). */
export function startsWithProxySignature(buffer: Buffer): boolean {
  const startsWith = (signature: Buffer): boolean =>
    buffer.length >= signature.length && buffer.subarray(0, signature.length).equals(signature);
  return startsWith(V1_SIGNATURE) || startsWith(V2_SIGNATURE);
}

// ---------------------------------------------------------------------------
// v1 (§2.1): "PROXY" SP ( "TCP4" | "TCP6" ) SP src SP dst SP sport SP dport CRLF
//        or  "PROXY" SP "UNKNOWN" [ SP anything ] CRLF

function parseV1(buffer: Buffer): ParseResult {
  // "PROXY" compared case-insensitively first: a sender writing "proxy " is
  // speaking PROXY badly, and that must be refused as malformed, not
  // handed to the HTTP parser as a request. Any other divergence is HTTP
  // (POST, PUT, PATCH, PRI ... all differ from "PROXY" by the 4th byte).
  const word = 'proxy';
  const seen = Math.min(buffer.length, word.length);
  for (let i = 0; i < seen; i++) {
    if ((buffer[i]! | 0x20) !== word.charCodeAt(i)) return ABSENT;
  }
  if (buffer.length < word.length) return NEED_MORE;
  if (buffer.toString('latin1', 0, 5) !== 'PROXY') return invalid('v1 signature must be upper-case "PROXY"');
  if (buffer.length < V1_SIGNATURE.length) return NEED_MORE;
  if (buffer[5] !== SPACE) return invalid('v1 signature must be followed by a single space');

  // The line ends at the first LF, which must come within 107 bytes and
  // follow a CR. Nothing after it belongs to us.
  const window = buffer.subarray(0, Math.min(buffer.length, V1_MAX_HEADER_BYTES));
  const lf = window.indexOf(LF);
  if (lf === -1) {
    if (buffer.length >= V1_MAX_HEADER_BYTES) return invalid('v1 header has no CRLF within 107 bytes');
    const problem = v1PrefixProblem(buffer.subarray(V1_SIGNATURE.length));
    return problem === null ? NEED_MORE : invalid(problem);
  }
  if (buffer[lf - 1] !== CR) return invalid('v1 header must end with CRLF, not a bare LF');
  const line = buffer.toString('latin1', V1_SIGNATURE.length, lf - 1);
  const header = parseV1Line(line);
  if (typeof header === 'string') return invalid(header);
  return { state: 'done', header, consumed: lf + 1 };
}

/**
 * Rejects an incomplete v1 line as soon as no continuation could make it
 * valid (a garbage sender need not hold the connection until the timeout).
 * Only ever rejects what parseV1Line would also reject, so a prefix never
 * answers differently from the whole header.
 */
function v1PrefixProblem(rest: Buffer): string | null {
  const text = rest.toString('latin1');
  const protocols = ['TCP4 ', 'TCP6 ', 'UNKNOWN'];
  if (protocols.some((protocol) => protocol.startsWith(text))) return null;
  if (text.startsWith('UNKNOWN')) {
    // "UNKNOWN" is followed by a space (then anything) or by the CRLF itself.
    const next = text.charCodeAt(7);
    if (next === SPACE) return null;
    if (next === CR && text.length === 8) return null;
    return 'v1 UNKNOWN must be followed by a space or CRLF';
  }
  if (!text.startsWith('TCP4 ') && !text.startsWith('TCP6 ')) return 'v1 protocol must be TCP4, TCP6 or UNKNOWN';
  let spaces = 0;
  let previous = SPACE;
  for (let i = 5; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === CR) {
      if (i !== text.length - 1) return 'v1 header has a CR not followed by LF';
    } else if (c === SPACE) {
      if (previous === SPACE) return 'v1 fields must be separated by single spaces';
      if (++spaces > 3) return 'v1 header has too many fields';
    } else if (!isV1AddressChar(c)) {
      return 'v1 header has a character that cannot appear in an address or port';
    }
    previous = c;
  }
  return null;
}

/** Digits, hex letters, '.' and ':' are all an address or port can be made of. */
function isV1AddressChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x3a) /* 0-9 : */ || c === 0x2e || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** The line between "PROXY " and CRLF: a header, or the reason it is malformed. */
function parseV1Line(line: string): ProxyHeader | string {
  // §2.1: with UNKNOWN "the receiver must ignore anything presented before
  // the CRLF is found".
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) return { kind: 'unknown', version: 1 };
  const fields = line.split(' ');
  if (fields.length !== 5) return 'v1 header must be "TCP4|TCP6 src dst sport dport" separated by single spaces';
  const [protocol, source, dest, sourcePort, destPort] = fields as [string, string, string, string, string];
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return 'v1 protocol must be TCP4, TCP6 or UNKNOWN';
  const family = protocol === 'TCP4' ? 4 : 6;
  // §2.1: IPv4 as exactly four decimal numbers, no leading zeros; IPv6 as
  // hex groups with at most one "::", 128 bits in total. The address family
  // must match the protocol.
  const sourceIp = parseIp(source);
  if (sourceIp === null || sourceIp.family !== family) return `v1 source address is not a valid ${protocol} address`;
  const destIp = parseIp(dest);
  if (destIp === null || destIp.family !== family) return `v1 destination address is not a valid ${protocol} address`;
  const sourcePortNumber = parseV1Port(sourcePort);
  if (sourcePortNumber === null) return 'v1 source port must be decimal 0..65535 without leading zeros';
  const destPortNumber = parseV1Port(destPort);
  if (destPortNumber === null) return 'v1 destination port must be decimal 0..65535 without leading zeros';
  return {
    kind: 'proxy',
    version: 1,
    family: family === 4 ? 'tcp4' : 'tcp6',
    sourceIp: formatIp(sourceIp.bytes),
    sourcePort: sourcePortNumber,
    destIp: formatIp(destIp.bytes),
    destPort: destPortNumber,
  };
}

function parseV1Port(text: string): number | null {
  if (!V1_PORT.test(text)) return null;
  const port = Number(text);
  return port <= 0xffff ? port : null;
}

// ---------------------------------------------------------------------------
// v2 (§2.2): signature(12) ver_cmd(1) fam(1) len(2, big-endian) addresses TLVs

function parseV2(buffer: Buffer, maxHeaderBytes: number): ParseResult {
  const seen = Math.min(buffer.length, V2_SIGNATURE.length);
  for (let i = 0; i < seen; i++) {
    // RFC 9112 §2.2 lets an HTTP client send CRLF before the request line:
    // only the full signature makes this PROXY.
    if (buffer[i] !== V2_SIGNATURE[i]) return ABSENT;
  }
  if (buffer.length <= 12) return NEED_MORE;

  // Each field is judged as soon as it arrives, so a bad header is refused
  // without waiting for the bytes its length field announces.
  const versionCommand = buffer[12]!;
  if (versionCommand >> 4 !== V2_VERSION) return invalid(`v2 version must be 2, got ${versionCommand >> 4}`);
  const command = versionCommand & 0x0f;
  if (command !== V2_COMMAND_LOCAL && command !== V2_COMMAND_PROXY) return invalid(`v2 command must be LOCAL or PROXY, got ${command}`);
  if (buffer.length <= 13) return NEED_MORE;

  const familyByte = buffer[13]!;
  const family = V2_FAMILIES.get(familyByte);
  if (family === undefined) return invalid(`v2 address family/protocol 0x${familyByte.toString(16).padStart(2, '0')} is not defined`);
  // With LOCAL, §2.2 says the receiver must "discard the protocol block
  // including the family which is ignored": a DGRAM family is only refused
  // under PROXY, where it would describe a connection we do not serve.
  if (command === V2_COMMAND_PROXY && family.datagram) return invalid(`v2 ${family.name} is not served (TCP only)`);
  if (buffer.length < V2_FIXED_HEADER_BYTES) return NEED_MORE;

  const payloadBytes = buffer.readUInt16BE(14);
  const totalBytes = V2_FIXED_HEADER_BYTES + payloadBytes;
  if (totalBytes > maxHeaderBytes) return invalid(`v2 header of ${totalBytes} bytes exceeds the ${maxHeaderBytes}-byte cap`);
  const addressBytes = command === V2_COMMAND_LOCAL ? 0 : family.addressBytes;
  if (payloadBytes < addressBytes)
    return invalid(`v2 length ${payloadBytes} is smaller than the ${family.name} address block (${addressBytes})`);
  if (buffer.length < totalBytes) return NEED_MORE;

  // From here on only the declared header is looked at, never beyond it.
  const header = buffer.subarray(0, totalBytes);
  const block = header.subarray(V2_FIXED_HEADER_BYTES);
  if (command === V2_COMMAND_LOCAL) return { state: 'done', header: { kind: 'local', version: 2 }, consumed: totalBytes };
  // §2.2 AF_UNSPEC: "the receiver should ignore address information", so
  // the block has no known layout to walk: skip it whole.
  if (familyByte === V2_FAMILY_UNSPEC) return { state: 'done', header: { kind: 'unknown', version: 2 }, consumed: totalBytes };

  const tlvProblem = walkTlvs(header, V2_FIXED_HEADER_BYTES + addressBytes);
  if (tlvProblem !== null) return invalid(tlvProblem);

  // §2.2 proxy_addr: src_addr dst_addr src_port[2] dst_port[2], network order;
  // addresses are 4 bytes for AF_INET, 16 for AF_INET6.
  if (familyByte === V2_FAMILY_TCP4) return { state: 'done', header: inetHeader(block, 'tcp4', 4), consumed: totalBytes };
  if (familyByte === V2_FAMILY_TCP6) return { state: 'done', header: inetHeader(block, 'tcp6', 16), consumed: totalBytes };
  // AF_UNIX stream: a path is no client IP; use the real peer address.
  return { state: 'done', header: { kind: 'unknown', version: 2 }, consumed: totalBytes };
}

function inetHeader(block: Buffer, family: 'tcp4' | 'tcp6', addressBytes: 4 | 16): ProxyHeader {
  return {
    kind: 'proxy',
    version: 2,
    family,
    sourceIp: formatIp(block.subarray(0, addressBytes)),
    destIp: formatIp(block.subarray(addressBytes, 2 * addressBytes)),
    sourcePort: block.readUInt16BE(2 * addressBytes),
    destPort: block.readUInt16BE(2 * addressBytes + 2),
  };
}

/** §2.2.3 PP2_TYPE_CRC32C. */
const PP2_TYPE_CRC32C = 0x03;

/**
 * §2.2 (struct pp2_tlv; the types follow in §2.2.1-§2.2.8): TLVs fill the
 * rest of the declared length, each type(1) length(2, big-endian) value. A
 * receiver "may choose to skip over and ignore the TLVs it is not interested
 * in": we act on none, but walk them with bounds checks so that a TLV
 * running past the declared length, or a stray partial TLV header, marks the
 * whole header as malformed. `header` is exactly the declared header
 * (16 + len bytes); the TLVs start at `from`.
 */
function walkTlvs(header: Buffer, from: number): string | null {
  let offset = from;
  while (offset < header.length) {
    if (header.length - offset < 3) return 'v2 TLV header truncated by the declared length';
    const type = header[offset]!;
    const valueBytes = header.readUInt16BE(offset + 1);
    const valueStart = offset + 3;
    const end = valueStart + valueBytes;
    if (end > header.length) return `v2 TLV type 0x${type.toString(16).padStart(2, '0')} overruns the declared length`;
    if (type === PP2_TYPE_CRC32C) {
      // §2.2.3: a receiver that supports the checksum MUST verify it, over
      // the whole header with the checksum field zeroed, and treat a
      // mismatch as an invalid connection.
      if (valueBytes !== 4) return 'v2 CRC32C TLV must hold 4 bytes';
      const zeroed = Buffer.from(header);
      zeroed.fill(0, valueStart, end);
      if (crc32c(zeroed) !== header.readUInt32BE(valueStart)) return 'v2 CRC32C checksum mismatch';
    }
    offset = end;
  }
  return null;
}

/** CRC32c (Castagnoli, RFC 4960 Appendix B), reflected polynomial 0x82F63B78. */
const CRC32C_TABLE = ((): Uint32Array => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
