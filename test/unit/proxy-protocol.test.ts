/**
 * PROXY protocol (haproxy proxy-protocol.txt): parser vectors as tables, every
 * split point, the connection wrapper on real sockets, and a time-boxed fuzz.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CidrSet, parseIp } from '../../src/net/cidr.js';
import {
  DEFAULT_MAX_PROXY_HEADER_BYTES,
  parseProxyHeader,
  type ParseResult,
  type ProxyHeader,
} from '../../src/worker/connection/proxy-protocol.js';
import {
  handOver,
  readProxyHeader,
  type ProxyProtocolOptions,
  type ProxyReadResult,
} from '../../src/worker/connection/proxy-protocol-reader.js';
import { seeded } from '../support/seeded.js';

// ---------------------------------------------------------------------------
// Vector builders

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const LOCAL = 0x20;
const PROXY = 0x21;
const TCP4 = 0x11;
const UDP4 = 0x12;
const TCP6 = 0x21;
const UDP6 = 0x22;
const UNSPEC = 0x00;
const UNIX_STREAM = 0x31;

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');

/** A v2 header: signature, ver_cmd, fam, big-endian length of `payload` (or `length` if given), payload. */
function v2(versionCommand: number, family: number, payload: Buffer, length = payload.length): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = versionCommand;
  fixed[1] = family;
  fixed.writeUInt16BE(length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, payload]);
}

function ipv4Block(source: string, dest: string, sourcePort: number, destPort: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sourcePort, 0);
  ports.writeUInt16BE(destPort, 2);
  return Buffer.concat([parseIp(source)!.bytes, parseIp(dest)!.bytes, ports]);
}

function ipv6Block(source: string, dest: string, sourcePort: number, destPort: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sourcePort, 0);
  ports.writeUInt16BE(destPort, 2);
  return Buffer.concat([parseIp(source)!.bytes, parseIp(dest)!.bytes, ports]);
}

/** §2.2 struct pp2_tlv: type(1) length(2) value. */
function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

/** Bitwise CRC32c (RFC 4960 Appendix B), independent of the module's table-driven one. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** §2.2.3: a v2 header whose PP2_TYPE_CRC32C TLV holds the checksum of the whole header (field zeroed while computing), plus `adjust`. */
function withCrc32c(versionCommand: number, family: number, addresses: Buffer, adjust = 0): Buffer {
  const header = v2(versionCommand, family, Buffer.concat([addresses, tlv(0x01, ascii('h2')), tlv(0x03, Buffer.alloc(4))]));
  header.writeUInt32BE((crc32c(header) + adjust) >>> 0, header.length - 4);
  return header;
}

const tcp4Header = (source: string, sourcePort: number, dest: string, destPort: number, version: 1 | 2 = 1): ProxyHeader => ({
  kind: 'proxy',
  version,
  family: 'tcp4',
  sourceIp: source,
  sourcePort,
  destIp: dest,
  destPort,
});
const tcp6Header = (source: string, sourcePort: number, dest: string, destPort: number, version: 1 | 2 = 1): ProxyHeader => ({
  kind: 'proxy',
  version,
  family: 'tcp6',
  sourceIp: source,
  sourcePort,
  destIp: dest,
  destPort,
});

const HTTP = ascii('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
const FFFF6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
/** §2.1's worst case: exactly 107 bytes. */
const V1_UNKNOWN_107 = ascii(`PROXY UNKNOWN ${FFFF6} ${FFFF6} 65535 65535\r\n`);
const TCP4_BLOCK = ipv4Block('192.0.2.1', '198.51.100.7', 56324, 443);
/** One TLV that brings the whole header to exactly the default cap. */
const LARGEST_TLV = tlv(0xe0, Buffer.alloc(DEFAULT_MAX_PROXY_HEADER_BYTES - 16 - 12 - 3, 0x61));

// ---------------------------------------------------------------------------
// Tables

interface ValidVector {
  name: string;
  bytes: Buffer;
  header: ProxyHeader;
  consumed: number;
}

const valid: ValidVector[] = [
  // v1 (§2.1)
  {
    name: 'v1 TCP4',
    bytes: ascii('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'),
    header: tcp4Header('192.168.0.1', 56324, '192.168.0.11', 443),
    consumed: 47,
  },
  {
    name: 'v1 TCP4 ports 0 and 65535',
    bytes: ascii('PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n'),
    header: tcp4Header('0.0.0.0', 0, '255.255.255.255', 65535),
    consumed: 44,
  },
  {
    name: 'v1 TCP6',
    bytes: ascii('PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n'),
    header: tcp6Header('2001:db8::1', 1, '2001:db8::2', 65535),
    consumed: 44,
  },
  {
    name: 'v1 TCP6 long forms are canonicalised',
    bytes: ascii('PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::FFFF:1.2.3.4 80 8080\r\n'),
    header: tcp6Header('2001:db8::1', 80, '::ffff:1.2.3.4', 8080),
    consumed: 75,
  },
  {
    name: 'v1 TCP6 worst case',
    bytes: ascii(`PROXY TCP6 ${FFFF6} ${FFFF6} 65535 65535\r\n`),
    header: tcp6Header(FFFF6, 65535, FFFF6, 65535),
    consumed: 104,
  },
  { name: 'v1 UNKNOWN', bytes: ascii('PROXY UNKNOWN\r\n'), header: { kind: 'unknown', version: 1 }, consumed: 15 },
  { name: 'v1 UNKNOWN with addresses, 107 bytes', bytes: V1_UNKNOWN_107, header: { kind: 'unknown', version: 1 }, consumed: 107 },
  {
    name: 'v1 UNKNOWN followed by anything',
    bytes: ascii('PROXY UNKNOWN \x00\xff\x01 junk\r\n'),
    header: { kind: 'unknown', version: 1 },
    consumed: 24,
  },
  {
    name: 'v1 followed by HTTP bytes, which are not consumed',
    bytes: Buffer.concat([ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1000 80\r\n'), HTTP]),
    header: tcp4Header('1.2.3.4', 1000, '5.6.7.8', 80),
    consumed: 36,
  },
  // v2 (§2.2)
  {
    name: 'v2 PROXY TCP4',
    bytes: v2(PROXY, TCP4, TCP4_BLOCK),
    header: tcp4Header('192.0.2.1', 56324, '198.51.100.7', 443, 2),
    consumed: 28,
  },
  {
    name: 'v2 PROXY TCP6',
    bytes: v2(PROXY, TCP6, ipv6Block('2001:db8::1', '2001:db8:0:0:1::2', 0, 65535)),
    header: tcp6Header('2001:db8::1', 0, '2001:db8::1:0:0:2', 65535, 2),
    consumed: 52,
  },
  {
    name: 'v2 PROXY TCP6 IPv4-mapped',
    bytes: v2(PROXY, TCP6, ipv6Block('::ffff:10.0.0.1', '::1', 1, 2)),
    header: tcp6Header('::ffff:10.0.0.1', 1, '::1', 2, 2),
    consumed: 52,
  },
  { name: 'v2 LOCAL', bytes: v2(LOCAL, UNSPEC, Buffer.alloc(0)), header: { kind: 'local', version: 2 }, consumed: 16 },
  { name: 'v2 LOCAL with a TCP4 block (ignored)', bytes: v2(LOCAL, TCP4, TCP4_BLOCK), header: { kind: 'local', version: 2 }, consumed: 28 },
  {
    name: 'v2 LOCAL ignores its family, even UDP',
    bytes: v2(LOCAL, UDP4, Buffer.alloc(3)),
    header: { kind: 'local', version: 2 },
    consumed: 19,
  },
  { name: 'v2 PROXY AF_UNSPEC', bytes: v2(PROXY, UNSPEC, Buffer.alloc(0)), header: { kind: 'unknown', version: 2 }, consumed: 16 },
  {
    name: 'v2 PROXY AF_UNSPEC with a block to skip',
    bytes: v2(PROXY, UNSPEC, Buffer.alloc(7, 0xff)),
    header: { kind: 'unknown', version: 2 },
    consumed: 23,
  },
  {
    name: 'v2 PROXY AF_UNIX',
    bytes: v2(PROXY, UNIX_STREAM, Buffer.alloc(216, 0x2f)),
    header: { kind: 'unknown', version: 2 },
    consumed: 232,
  },
  {
    name: 'v2 TCP4 with TLVs (ALPN, AUTHORITY, empty NOOP)',
    bytes: v2(
      PROXY,
      TCP4,
      Buffer.concat([TCP4_BLOCK, tlv(0x01, ascii('h2')), tlv(0x02, ascii('example.com')), tlv(0x04, Buffer.alloc(0))]),
    ),
    header: tcp4Header('192.0.2.1', 56324, '198.51.100.7', 443, 2),
    consumed: 28 + 5 + 14 + 3,
  },
  {
    name: 'v2 TCP4 with a correct CRC32C TLV',
    bytes: withCrc32c(PROXY, TCP4, TCP4_BLOCK),
    header: tcp4Header('192.0.2.1', 56324, '198.51.100.7', 443, 2),
    consumed: 28 + 5 + 7,
  },
  {
    name: 'v2 TCP4 with a TLV block filling the cap exactly',
    bytes: v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, LARGEST_TLV])),
    header: tcp4Header('192.0.2.1', 56324, '198.51.100.7', 443, 2),
    consumed: DEFAULT_MAX_PROXY_HEADER_BYTES,
  },
  {
    name: 'v2 followed by HTTP bytes, which are not consumed',
    bytes: Buffer.concat([v2(PROXY, TCP4, TCP4_BLOCK), HTTP]),
    header: tcp4Header('192.0.2.1', 56324, '198.51.100.7', 443, 2),
    consumed: 28,
  },
  {
    name: 'v2 followed by bytes that look like a TLV, outside the declared length',
    bytes: Buffer.concat([v2(PROXY, TCP4, TCP4_BLOCK), Buffer.from([0x01, 0xff, 0xff])]),
    header: tcp4Header('192.0.2.1', 56324, '198.51.100.7', 443, 2),
    consumed: 28,
  },
];

const v1Line = (line: string): Buffer => ascii(`PROXY ${line}\r\n`);

const invalid: [name: string, bytes: Buffer][] = [
  // v1
  ['v1 leading-zero octet', v1Line('TCP4 192.168.01.1 192.168.0.11 56324 443')],
  ['v1 octet 256', v1Line('TCP4 256.0.0.1 1.1.1.1 1 2')],
  ['v1 port 65536', v1Line('TCP4 1.2.3.4 5.6.7.8 65536 80')],
  ['v1 port "080"', v1Line('TCP4 1.2.3.4 5.6.7.8 1000 080')],
  ['v1 port "00"', v1Line('TCP4 1.2.3.4 5.6.7.8 00 80')],
  ['v1 signed port', v1Line('TCP4 1.2.3.4 5.6.7.8 +1 80')],
  ['v1 double space between fields', v1Line('TCP4 1.2.3.4  5.6.7.8 1 2')],
  ['v1 double space after PROXY', ascii('PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
  ['v1 tab instead of space', ascii('PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
  ['v1 lowercase "proxy"', ascii('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
  ['v1 mixed-case "Proxy"', ascii('Proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
  ['v1 lowercase protocol', v1Line('tcp4 1.2.3.4 5.6.7.8 1 2')],
  ['v1 unknown protocol', v1Line('TCP5 1.2.3.4 5.6.7.8 1 2')],
  ['v1 UDP4', v1Line('UDP4 1.2.3.4 5.6.7.8 1 2')],
  ['v1 no CRLF within 107 bytes', ascii(`PROXY UNKNOWN ${'a'.repeat(120)}`)],
  ['v1 line of 108 bytes', Buffer.concat([V1_UNKNOWN_107.subarray(0, 105), ascii('x\r\n')])],
  ['v1 LF only', ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n')],
  ['v1 bare CR inside', ascii('PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n')],
  ['v1 TCP4 with IPv6 addresses', v1Line('TCP4 ::1 ::1 1 2')],
  ['v1 TCP6 with IPv4 addresses', v1Line('TCP6 1.2.3.4 5.6.7.8 1 2')],
  ['v1 TCP6 with a zone id', v1Line('TCP6 fe80::1%eth0 ::1 1 2')],
  ['v1 TCP6 with 9 groups', v1Line('TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2')],
  ['v1 trailing garbage before CRLF', v1Line('TCP4 1.2.3.4 5.6.7.8 1 2 x')],
  ['v1 trailing space before CRLF', v1Line('TCP4 1.2.3.4 5.6.7.8 1 2 ')],
  ['v1 missing port', v1Line('TCP4 1.2.3.4 5.6.7.8 1')],
  ['v1 nothing after PROXY', ascii('PROXY \r\n')],
  ['v1 UNKNOWN glued to text', v1Line('UNKNOWNX')],
  ['v1 UNKNOWN then bare CR', ascii('PROXY UNKNOWN\rx\r\n')],
  // v2
  ['v2 version 1', v2(0x11, TCP4, TCP4_BLOCK)],
  ['v2 version 3', v2(0x31, TCP4, TCP4_BLOCK)],
  ['v2 command 2', v2(0x22, TCP4, TCP4_BLOCK)],
  ['v2 command 15', v2(0x2f, TCP4, TCP4_BLOCK)],
  ['v2 PROXY UDP4 (DGRAM)', v2(PROXY, UDP4, TCP4_BLOCK)],
  ['v2 PROXY UDP6 (DGRAM)', v2(PROXY, UDP6, Buffer.alloc(36))],
  ['v2 PROXY UNIX DGRAM', v2(PROXY, 0x32, Buffer.alloc(216))],
  ['v2 undefined family 0x41', v2(PROXY, 0x41, TCP4_BLOCK)],
  ['v2 undefined transport 0x13', v2(PROXY, 0x13, TCP4_BLOCK)],
  ['v2 INET with UNSPEC transport 0x10', v2(PROXY, 0x10, TCP4_BLOCK)],
  ['v2 LOCAL with an undefined family', v2(LOCAL, 0x44, Buffer.alloc(0))],
  ['v2 TCP4 length smaller than the address block', v2(PROXY, TCP4, TCP4_BLOCK.subarray(0, 11))],
  ['v2 TCP6 length smaller than the address block', v2(PROXY, TCP6, Buffer.alloc(35))],
  ['v2 UNIX length smaller than the address block', v2(PROXY, UNIX_STREAM, Buffer.alloc(215))],
  ['v2 TLV overrunning the declared length', v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, tlv(0x01, ascii('h2')).subarray(0, 4)]))],
  [
    'v2 TLV length past the declared length (more bytes follow)',
    Buffer.concat([v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, Buffer.from([0x01, 0x00, 0x05, 0x61])])), ascii('bcdefgh')]),
  ],
  ['v2 CRC32C mismatch', withCrc32c(PROXY, TCP4, TCP4_BLOCK, 1)],
  ['v2 CRC32C TLV of 3 bytes', v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, tlv(0x03, Buffer.alloc(3))]))],
  ['v2 truncated TLV header', v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, Buffer.from([0x04, 0x00])]))],
  ['v2 total one byte over the cap', v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, tlv(0xe0, Buffer.alloc(LARGEST_TLV.length - 3 + 1))]))],
  ['v2 length 65535 (legal per spec, over our cap)', v2(PROXY, TCP4, Buffer.alloc(0), 0xffff)],
];

const absent: [name: string, bytes: Buffer, decidedAfter: number][] = [
  ['GET request', ascii('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), 1],
  ['POST request', ascii('POST / HTTP/1.1\r\n'), 2],
  ['PUT request', ascii('PUT / HTTP/1.1\r\n'), 2],
  ['PROPFIND request', ascii('PROPFIND / HTTP/1.1\r\n'), 4],
  ['HTTP/2 preface', ascii('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 3],
  ['lowercase "get"', ascii('get / HTTP/1.1\r\n'), 1],
  ['CRLF then a request (RFC 9112 §2.2)', ascii('\r\nGET / HTTP/1.1\r\n'), 3],
  ['TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 1],
  ['v2 signature broken at its last byte', Buffer.concat([V2_SIGNATURE.subarray(0, 11), ascii('X')]), 12],
];

// ---------------------------------------------------------------------------
// Feeding helpers

/** Feeds `chunks` the way a socket delivers them: parse the accumulated bytes after each, stop at the first decision. */
function feed(chunks: readonly Buffer[]): ParseResult {
  let received = Buffer.alloc(0);
  let result: ParseResult = { state: 'need-more' };
  for (const chunk of chunks) {
    received = Buffer.concat([received, chunk]);
    result = parseProxyHeader(received);
    if (result.state !== 'need-more') return result;
  }
  return result;
}

function byteAtATime(bytes: Buffer): Buffer[] {
  return [...bytes].map((byte) => Buffer.from([byte]));
}

/** The same decision: state, and for 'done' the header and consumed count (reasons may differ between an early and a late rejection). */
function sameDecision(actual: ParseResult, expected: ParseResult, message: string): void {
  assert.equal(actual.state, expected.state, message);
  if (expected.state === 'done') assert.deepEqual(actual, expected, message);
}

// ---------------------------------------------------------------------------
// Parser tests

it('the test CRC32c matches the RFC 3720 check value', () => assert.equal(crc32c(ascii('123456789')), 0xe3069283));

describe('parseProxyHeader: valid vectors', () => {
  for (const vector of valid) {
    it(vector.name, () => {
      const expected: ParseResult = { state: 'done', header: vector.header, consumed: vector.consumed };
      assert.deepEqual(parseProxyHeader(vector.bytes), expected);
      // No prefix shorter than the header may decide anything else.
      for (let n = 0; n < vector.consumed; n++) {
        assert.equal(parseProxyHeader(vector.bytes.subarray(0, n)).state, 'need-more', `prefix of ${n} bytes`);
      }
      assert.deepEqual(feed(byteAtATime(vector.bytes)), expected, 'one byte at a time');
      for (let split = 1; split < vector.bytes.length; split++) {
        assert.deepEqual(feed([vector.bytes.subarray(0, split), vector.bytes.subarray(split)]), expected, `split at ${split}`);
      }
    });
  }
});

describe('parseProxyHeader: invalid vectors', () => {
  for (const [name, bytes] of invalid) {
    it(name, () => {
      const whole = parseProxyHeader(bytes);
      assert.equal(whole.state, 'invalid');
      sameDecision(feed(byteAtATime(bytes)), whole, 'one byte at a time');
      for (let split = 1; split < bytes.length; split++) {
        sameDecision(feed([bytes.subarray(0, split), bytes.subarray(split)]), whole, `split at ${split}`);
      }
    });
  }

  it('refuses an over-cap v2 header from its 16 fixed bytes, without waiting for the rest', () => {
    assert.equal(parseProxyHeader(v2(PROXY, TCP4, Buffer.alloc(0), DEFAULT_MAX_PROXY_HEADER_BYTES - 16 + 1)).state, 'invalid');
  });

  it('refuses a bad v2 version from byte 13 alone', () => {
    assert.equal(parseProxyHeader(Buffer.concat([V2_SIGNATURE, Buffer.from([0x11])])).state, 'invalid');
  });

  it('a raised cap accepts what the default refuses', () => {
    const bytes = v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, tlv(0xe0, Buffer.alloc(5000))]));
    assert.equal(parseProxyHeader(bytes).state, 'invalid');
    assert.equal(parseProxyHeader(bytes, 16 + 0xffff).state, 'done');
    assert.throws(() => parseProxyHeader(bytes, 16 + 0x10000), RangeError);
    assert.throws(() => parseProxyHeader(bytes, 100), RangeError);
  });
});

describe('parseProxyHeader: absent (plain traffic is not delayed)', () => {
  for (const [name, bytes, decidedAfter] of absent) {
    it(`${name}: absent after ${decidedAfter} byte(s)`, () => {
      for (let n = 1; n < decidedAfter; n++) assert.equal(parseProxyHeader(bytes.subarray(0, n)).state, 'need-more', `prefix of ${n}`);
      assert.equal(parseProxyHeader(bytes.subarray(0, decidedAfter)).state, 'absent');
      assert.equal(parseProxyHeader(bytes).state, 'absent');
    });
  }

  it('an empty buffer needs more', () => assert.deepEqual(parseProxyHeader(Buffer.alloc(0)), { state: 'need-more' }));
});

// ---------------------------------------------------------------------------
// Connection wrapper on real sockets

const TRUSTED_ADDRESS = '127.0.0.1';
const UNTRUSTED_ADDRESS = '127.0.0.5';
const trustedSet = new CidrSet([`${TRUSTED_ADDRESS}/32`]);

interface ServerSide {
  result: ProxyReadResult;
  /** Bytes read from the socket after readProxyHeader returned (ok results only), until the client ended. */
  after: Buffer;
  /** Listener counts before and after readProxyHeader. */
  listeners: { before: Record<string, number>; after: Record<string, number> };
  elapsedMs: number;
}

const EVENTS = ['data', 'end', 'close', 'error', 'readable'] as const;
const countListeners = (socket: net.Socket): Record<string, number> =>
  Object.fromEntries(EVENTS.map((event) => [event, socket.listenerCount(event)]));

/** Accepts one connection, runs readProxyHeader on it, then drains what follows; the client side is `client`. */
async function exchange(
  options: Partial<ProxyProtocolOptions>,
  client: (socket: net.Socket) => Promise<void>,
  localAddress = TRUSTED_ADDRESS,
): Promise<ServerSide> {
  const fullOptions: ProxyProtocolOptions = { required: false, trusted: trustedSet, timeoutMs: 2000, ...options };
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const serverSide = new Promise<ServerSide>((resolve, reject) => {
    server.once('connection', (socket: net.Socket) => {
      const before = countListeners(socket);
      const started = Date.now();
      readProxyHeader(socket, fullOptions).then((result) => {
        const elapsedMs = Date.now() - started;
        const listeners = { before, after: countListeners(socket) };
        if (!result.ok) {
          socket.destroy();
          resolve({ result, after: Buffer.alloc(0), listeners, elapsedMs });
          return;
        }
        const chunks: Buffer[] = [];
        socket.on('error', reject);
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket.on('end', () => {
          socket.end();
          resolve({ result, after: Buffer.concat(chunks), listeners, elapsedMs });
        });
        socket.resume();
      }, reject);
    });
  });
  const socket = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', localAddress });
  socket.setNoDelay(true);
  socket.on('error', () => {}); // the server may destroy a refused connection mid-write
  await once(socket, 'connect');
  try {
    await client(socket);
    return await serverSide;
  } finally {
    socket.destroy();
    server.close();
  }
}

const sendAndEnd =
  (...chunks: Buffer[]) =>
  async (socket: net.Socket): Promise<void> => {
    for (const chunk of chunks) socket.write(chunk);
    socket.end();
  };

describe('readProxyHeader on real sockets', () => {
  const V1_HEADER = ascii('PROXY TCP4 203.0.113.9 198.51.100.1 40000 80\r\n');
  const V1_PARSED = tcp4Header('203.0.113.9', 40000, '198.51.100.1', 80);

  it('trusted sender, header and HTTP bytes in one packet: header parsed, the rest readable afterwards', async () => {
    const side = await exchange({}, sendAndEnd(Buffer.concat([V1_HEADER, HTTP])));
    assert.deepEqual(side.result, { ok: true, header: V1_PARSED });
    assert.deepEqual(side.after, HTTP);
    assert.deepEqual(side.listeners.after, side.listeners.before, 'every listener added was removed');
  });

  it('trusted sender, v2 header with TLVs and HTTP bytes in one packet', async () => {
    const header = v2(PROXY, TCP4, Buffer.concat([TCP4_BLOCK, tlv(0x01, ascii('http/1.1'))]));
    const side = await exchange({ required: true }, sendAndEnd(Buffer.concat([header, HTTP])));
    assert.deepEqual(side.result, { ok: true, header: tcp4Header('192.0.2.1', 56324, '198.51.100.7', 443, 2) });
    assert.deepEqual(side.after, HTTP);
  });

  it('header split across several writes with delays', async () => {
    const bytes = Buffer.concat([V1_HEADER, HTTP]);
    const side = await exchange({ required: true }, async (socket) => {
      for (const [from, to] of [
        [0, 1],
        [1, 7],
        [7, 20],
        [20, V1_HEADER.length - 1],
        [V1_HEADER.length - 1, bytes.length],
      ] as const) {
        socket.write(bytes.subarray(from, to));
        await sleep(30);
      }
      socket.end();
    });
    assert.deepEqual(side.result, { ok: true, header: V1_PARSED });
    assert.deepEqual(side.after, HTTP);
  });

  it('v2 header split across writes with delays', async () => {
    const header = v2(PROXY, TCP6, ipv6Block('2001:db8::7', '2001:db8::8', 5, 6));
    const side = await exchange({ required: true }, async (socket) => {
      for (const part of [
        header.subarray(0, 5),
        header.subarray(5, 14),
        header.subarray(14, 30),
        Buffer.concat([header.subarray(30), HTTP]),
      ]) {
        socket.write(part);
        await sleep(30);
      }
      socket.end();
    });
    assert.deepEqual(side.result, { ok: true, header: tcp6Header('2001:db8::7', 5, '2001:db8::8', 6, 2) });
    assert.deepEqual(side.after, HTTP);
  });

  it('untrusted sender sending a header is refused', async () => {
    const side = await exchange({}, sendAndEnd(Buffer.concat([V1_HEADER, HTTP])), UNTRUSTED_ADDRESS);
    assert.equal(side.result.ok, false);
    assert.equal(!side.result.ok && side.result.reason, 'untrusted');
    assert.deepEqual(side.listeners.after, side.listeners.before);
  });

  it('untrusted sender is refused on the signature alone, before the header completes', async () => {
    const side = await exchange({}, async (socket) => void socket.write(V2_SIGNATURE), UNTRUSTED_ADDRESS);
    assert.equal(!side.result.ok && side.result.reason, 'untrusted');
  });

  it('untrusted sender of plain HTTP passes through when not required, every byte kept', async () => {
    const side = await exchange({}, sendAndEnd(HTTP), UNTRUSTED_ADDRESS);
    assert.deepEqual(side.result, { ok: true, header: null });
    assert.deepEqual(side.after, HTTP);
  });

  it('required: an untrusted peer is refused at once, without reading', async () => {
    const side = await exchange({ required: true, timeoutMs: 5000 }, async () => {}, UNTRUSTED_ADDRESS);
    assert.equal(!side.result.ok && side.result.reason, 'untrusted');
    assert.ok(side.elapsedMs < 1000, `took ${side.elapsedMs} ms`);
  });

  it('required: a trusted peer without a header is missing', async () => {
    const side = await exchange({ required: true }, sendAndEnd(HTTP));
    assert.equal(!side.result.ok && side.result.reason, 'missing');
  });

  it('not required: a trusted peer without a header is served, every byte kept', async () => {
    const side = await exchange({}, sendAndEnd(HTTP));
    assert.deepEqual(side.result, { ok: true, header: null });
    assert.deepEqual(side.after, HTTP);
  });

  it('a malformed header from a trusted peer is malformed', async () => {
    const side = await exchange({}, sendAndEnd(ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n')));
    assert.equal(!side.result.ok && side.result.reason, 'malformed');
  });

  it('a header that never completes times out', async () => {
    const side = await exchange({ timeoutMs: 300 }, async (socket) => void socket.write(ascii('PROXY TCP4 1.2.3')));
    assert.equal(!side.result.ok && side.result.reason, 'timeout');
    assert.ok(side.elapsedMs >= 250 && side.elapsedMs < 2000, `took ${side.elapsedMs} ms`);
    assert.deepEqual(side.listeners.after, side.listeners.before);
  });

  it('a silent peer times out', async () => {
    const side = await exchange({ timeoutMs: 200 }, async () => {});
    assert.equal(!side.result.ok && side.result.reason, 'timeout');
  });

  it('a peer closing inside the header is malformed; closing before any byte is missing', async () => {
    const inside = await exchange({}, sendAndEnd(ascii('PROXY TCP4 1.2')));
    assert.equal(!inside.result.ok && inside.result.reason, 'malformed');
    const silent = await exchange({}, sendAndEnd());
    assert.equal(!silent.result.ok && silent.result.reason, 'missing');
  });

  it('handOver gives an http.Server every request after the header, on a kept-alive connection', async () => {
    const seen: string[] = [];
    const httpServer = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.end(`ok ${req.url}`);
    });
    const server = net.createServer((socket) => {
      void readProxyHeader(socket, { required: true, trusted: trustedSet, timeoutMs: 2000 }).then((result) => {
        if (result.ok) handOver(httpServer, socket);
        else socket.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    try {
      await once(client, 'connect');
      client.write(Buffer.concat([V1_HEADER, ascii('GET /first HTTP/1.1\r\nHost: a\r\n\r\n')]));
      let response = '';
      client.on('data', (chunk: Buffer) => (response += chunk.toString('latin1')));
      while (!response.includes('ok /first')) await sleep(10);
      client.write(ascii('GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
      await once(client, 'end');
      assert.deepEqual(seen, ['/first', '/second']);
      assert.match(response, /ok \/second$/);
    } finally {
      client.destroy();
      server.close();
      httpServer.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Fuzz

describe('parseProxyHeader fuzz', () => {
  const FUZZ_BUDGET_MS = Number(process.env.PROXY_FUZZ_MS ?? 4000);
  const SEED = Number(process.env.PROXY_FUZZ_SEED ?? 0x5eed_0004);

  it(`never throws, never over-consumes, and decides the same on every split (seed ${SEED}, ${FUZZ_BUDGET_MS} ms)`, {
    timeout: FUZZ_BUDGET_MS + 10_000,
  }, (t) => {
    const random = seeded(SEED);
    const int = (n: number): number => Math.floor(random() * n);
    const byte = (): number => (random() < 0.3 ? [0x20, 0x0d, 0x0a, 0x3a, 0x2e, 0x30, 0x00, 0xff][int(8)]! : int(256));
    const seeds = [...valid.map((vector) => vector.bytes), ...invalid.map(([, bytes]) => bytes)];

    const mutate = (input: Buffer): Buffer => {
      const bytes = [...input];
      for (let rounds = 1 + int(4); rounds > 0; rounds--) {
        const at = int(bytes.length + 1);
        switch (int(7)) {
          case 0:
            bytes[at] = (bytes[at] ?? 0) ^ (1 << int(8));
            break;
          case 1:
            bytes[at] = byte();
            break;
          case 2:
            bytes.splice(at, 0, byte());
            break;
          case 3:
            bytes.splice(at, 1 + int(4));
            break;
          case 4:
            bytes.length = Math.min(bytes.length, at);
            break;
          case 5:
            bytes.splice(at, 0, ...bytes.slice(int(bytes.length), int(bytes.length) + int(8)));
            break;
          case 6: // the v2 length field, where bounds bugs live
            if (bytes.length >= 16) {
              bytes[14] = int(256);
              bytes[15] = int(256);
            }
            break;
        }
      }
      return Buffer.from(bytes.slice(0, 8192));
    };
    const generate = (): Buffer => {
      const choice = random();
      if (choice < 0.7) return mutate(seeds[int(seeds.length)]!);
      const prefix = [V2_SIGNATURE, ascii('PROXY '), ascii('PROXY TCP4 '), ascii('PROXY UNKNOWN'), Buffer.alloc(0)][int(5)]!;
      return Buffer.concat([prefix, Buffer.from(Array.from({ length: int(300) }, byte))]);
    };

    const checkShape = (result: ParseResult, input: Buffer, label: string): void => {
      assert.ok(['need-more', 'absent', 'done', 'invalid'].includes(result.state), label);
      if (result.state === 'invalid') assert.equal(typeof result.reason, 'string', label);
      if (result.state !== 'done') return;
      assert.ok(
        Number.isInteger(result.consumed) && result.consumed > 0 && result.consumed <= input.length,
        `${label}: consumed ${result.consumed} of ${input.length}`,
      );
      const { header } = result;
      if (header.kind === 'proxy') {
        for (const port of [header.sourcePort, header.destPort]) assert.ok(Number.isInteger(port) && port >= 0 && port <= 0xffff, label);
        for (const ip of [header.sourceIp, header.destIp]) assert.equal(parseIp(ip)?.family, header.family === 'tcp4' ? 4 : 6, label);
      }
    };

    const deadline = Date.now() + FUZZ_BUDGET_MS;
    let iterations = 0;
    const decided: Record<string, number> = { 'need-more': 0, absent: 0, done: 0, invalid: 0 };
    while (Date.now() < deadline) {
      iterations++;
      const input = generate();
      const label = `seed ${SEED} iteration ${iterations} input ${input.toString('hex')}`;
      const whole = parseProxyHeader(input);
      checkShape(whole, input, label);
      decided[whole.state]!++;
      // Any prefix either needs more or already gives the whole's decision.
      const cut = int(input.length + 1);
      const prefix = parseProxyHeader(input.subarray(0, cut));
      checkShape(prefix, input.subarray(0, cut), label);
      if (prefix.state !== 'need-more') sameDecision(prefix, whole, `${label}: prefix ${cut}`);
      // Random chunkings reach the same decision.
      const chunks: Buffer[] = [];
      for (let offset = 0; offset < input.length; ) {
        const size = 1 + int(random() < 0.5 ? 4 : 64);
        chunks.push(input.subarray(offset, offset + size));
        offset += size;
      }
      sameDecision(feed(chunks), whole, `${label}: chunked`);
      // A 'done' header parses identically from exactly its own bytes.
      if (whole.state === 'done') assert.deepEqual(parseProxyHeader(input.subarray(0, whole.consumed)), whole, label);
    }
    t.diagnostic(`${iterations} inputs; whole-input decisions ${JSON.stringify(decided)}`);
    assert.ok(iterations > 1000, `only ${iterations} iterations`);
    assert.ok(decided.done! > 0 && decided.invalid! > 0 && decided.absent! > 0, `coverage: ${JSON.stringify(decided)}`);
  });
});
