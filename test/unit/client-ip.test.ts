/** Client IP resolution: trust, header priority, list walks, normalisation, private addresses. */
import assert from 'node:assert/strict';
import http, { type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { describe, it } from 'node:test';
import { CidrSet, parseIp } from '../../src/net/cidr.js';
import { isPrivateIp, resolveClientIp, type ClientIpPolicy, type ClientIpResult } from '../../src/worker/pipeline/client-ip.js';

const DEFAULT_HEADERS = ['CF-Connecting-IP', 'X-Real-IP', 'X-Forwarded-For', 'X-Client-IP', 'Forwarded'];
const TRUSTED = new CidrSet(['10.0.0.0/8', '192.168.0.0/16', '2001:db8:ffff::/48']);

function policy(overrides: Partial<ClientIpPolicy> = {}): ClientIpPolicy {
  return {
    trustProxy: true,
    trustedProxies: TRUSTED,
    trustedHops: 2,
    clientIpHeaders: DEFAULT_HEADERS,
    rejectPrivateIp: false,
    requireProxyHeaders: false,
    ...overrides,
  };
}

interface Case {
  readonly name: string;
  /** Defaults to 10.0.0.1, a trusted proxy. */
  readonly peer?: string;
  readonly headers: IncomingHttpHeaders;
  readonly policy?: Partial<ClientIpPolicy>;
  readonly expect: ClientIpResult;
}

const PROXY = '10.0.0.1';
const ok = (clientIp: string, via: string | null = null): ClientIpResult => ({ ok: true, clientIp, via });
const fromPeer = ok(PROXY);

function runTable(cases: readonly Case[]): void {
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(resolveClientIp(c.peer ?? PROXY, c.headers, policy(c.policy)), c.expect);
    });
  }
}

describe('untrusted peers: forwarding headers are ignored', () => {
  const spoofed: IncomingHttpHeaders = {
    'x-forwarded-for': '198.51.100.7',
    'x-real-ip': '198.51.100.8',
    'cf-connecting-ip': '198.51.100.9',
    'x-client-ip': '198.51.100.10',
    forwarded: 'for=198.51.100.11',
  };
  runTable([
    { name: 'public peer with every header spoofed', peer: '203.0.113.9', headers: spoofed, expect: ok('203.0.113.9') },
    {
      name: 'spoofed X-Forwarded-For alone',
      peer: '203.0.113.9',
      headers: { 'x-forwarded-for': '198.51.100.7' },
      expect: ok('203.0.113.9'),
    },
    { name: 'spoofed X-Real-IP alone', peer: '203.0.113.9', headers: { 'x-real-ip': '198.51.100.7' }, expect: ok('203.0.113.9') },
    { name: 'spoofed Forwarded alone', peer: '203.0.113.9', headers: { forwarded: 'for=198.51.100.7' }, expect: ok('203.0.113.9') },
    { name: 'trust_proxy off: even a peer inside trusted_proxies', headers: spoofed, policy: { trustProxy: false }, expect: fromPeer },
    {
      name: 'require_proxy_headers does not apply to non-proxies',
      peer: '203.0.113.9',
      headers: {},
      policy: { requireProxyHeaders: true },
      expect: ok('203.0.113.9'),
    },
    { name: 'peer that is not an address is kept as given', peer: '', headers: spoofed, expect: ok('') },
    { name: 'IPv6 peer is canonicalised', peer: '2001:DB8:0:0:0:0:0:9', headers: spoofed, expect: ok('2001:db8::9') },
  ]);
});

describe('trusted peer: each header and the priority order', () => {
  runTable([
    { name: 'CF-Connecting-IP', headers: { 'cf-connecting-ip': '198.51.100.7' }, expect: ok('198.51.100.7', 'cf-connecting-ip') },
    { name: 'X-Real-IP', headers: { 'x-real-ip': '198.51.100.7' }, expect: ok('198.51.100.7', 'x-real-ip') },
    { name: 'X-Forwarded-For', headers: { 'x-forwarded-for': '198.51.100.7' }, expect: ok('198.51.100.7', 'x-forwarded-for') },
    { name: 'X-Client-IP', headers: { 'x-client-ip': '198.51.100.7' }, expect: ok('198.51.100.7', 'x-client-ip') },
    { name: 'Forwarded', headers: { forwarded: 'for=198.51.100.7' }, expect: ok('198.51.100.7', 'forwarded') },
    {
      name: 'True-Client-IP when configured',
      headers: { 'true-client-ip': '198.51.100.7' },
      policy: { clientIpHeaders: ['True-Client-IP'] },
      expect: ok('198.51.100.7', 'true-client-ip'),
    },
    { name: 'a header not in the list is ignored', headers: { 'true-client-ip': '198.51.100.7' }, expect: fromPeer },
    { name: 'no headers: the proxy itself', headers: {}, expect: fromPeer },
    {
      name: 'first in priority wins',
      headers: {
        'cf-connecting-ip': '198.51.100.1',
        'x-real-ip': '198.51.100.2',
        'x-forwarded-for': '198.51.100.3',
        forwarded: 'for=198.51.100.4',
      },
      expect: ok('198.51.100.1', 'cf-connecting-ip'),
    },
    {
      name: 'X-Real-IP before X-Forwarded-For',
      headers: { 'x-real-ip': '198.51.100.2', 'x-forwarded-for': '198.51.100.3' },
      expect: ok('198.51.100.2', 'x-real-ip'),
    },
    {
      name: 'configured order is followed',
      headers: { 'x-real-ip': '198.51.100.2', 'x-forwarded-for': '198.51.100.3' },
      policy: { clientIpHeaders: ['X-Forwarded-For', 'X-Real-IP'] },
      expect: ok('198.51.100.3', 'x-forwarded-for'),
    },
    {
      name: 'configured names are case-insensitive',
      headers: { 'x-real-ip': '198.51.100.2' },
      policy: { clientIpHeaders: ['x-REAL-ip'] },
      expect: ok('198.51.100.2', 'x-real-ip'),
    },
  ]);
});

describe('single-value headers: exactly one address, malformed ones fall through', () => {
  const realIp = (value: string | string[], expect: ClientIpResult): Case => ({
    name: `X-Real-IP ${JSON.stringify(value)}`,
    headers: { 'x-real-ip': value },
    policy: { clientIpHeaders: ['X-Real-IP'] },
    expect,
  });
  const real = (ip: string): ClientIpResult => ok(ip, 'x-real-ip');
  runTable([
    realIp('198.51.100.7', real('198.51.100.7')),
    realIp(' \t198.51.100.7 \t', real('198.51.100.7')),
    realIp('2001:db8::7', real('2001:db8::7')),
    realIp('[2001:db8::7]', real('2001:db8::7')),
    realIp('[2001:db8::7]:443', real('2001:db8::7')),
    realIp('2001:0DB8:0000:0000:0000:0000:0000:0007', real('2001:db8::7')),
    realIp('::ffff:198.51.100.7', real('198.51.100.7')),
    realIp('::FFFF:C633:6407', real('198.51.100.7')),
    realIp('[::ffff:198.51.100.7]:80', real('198.51.100.7')),
    // Malformed: the proxy itself is what is left.
    realIp('198.51.100.7:80', fromPeer), // these headers carry no port
    realIp('[198.51.100.7]', fromPeer), // brackets are for IPv6
    realIp('[2001:db8::7]:', fromPeer),
    realIp('[2001:db8::7]:65536', fromPeer),
    realIp('[2001:db8::7', fromPeer),
    realIp('[2001:db8::7]x', fromPeer),
    realIp('fe80::1%eth0', fromPeer), // a zone means nothing here
    realIp('198.51.100.7, 198.51.100.8', fromPeer), // Node joined two header lines
    realIp(['198.51.100.7', '198.51.100.8'], fromPeer),
    realIp('198.51.100.7 198.51.100.8', fromPeer),
    realIp('', fromPeer),
    realIp('unknown', fromPeer),
    realIp('example.com', fromPeer),
    realIp('198.51.100', fromPeer),
    realIp('198.51.100.256', fromPeer),
    realIp('010.0.0.1', fromPeer), // leading zeros: octal to some parsers
    realIp('0x7f.1', fromPeer),
    {
      name: 'a malformed header falls through to the next one',
      headers: { 'cf-connecting-ip': 'garbage', 'x-real-ip': '198.51.100.7:80', 'x-forwarded-for': '198.51.100.9' },
      expect: ok('198.51.100.9', 'x-forwarded-for'),
    },
    {
      name: 'every header malformed: the proxy',
      headers: { 'cf-connecting-ip': 'x', 'x-real-ip': 'y', 'x-forwarded-for': 'z', 'x-client-ip': '', forwarded: 'for=unknown' },
      expect: fromPeer,
    },
  ]);
});

describe('X-Forwarded-For: right to left through trusted proxies, at most trusted_hops', () => {
  const xff = (name: string, value: string | string[], expect: ClientIpResult, extra: Partial<ClientIpPolicy> = {}): Case => ({
    name,
    headers: { 'x-forwarded-for': value },
    policy: { clientIpHeaders: ['X-Forwarded-For'], ...extra },
    expect,
  });
  const via = (ip: string): ClientIpResult => ok(ip, 'x-forwarded-for');
  runTable([
    xff('one entry', '198.51.100.7', via('198.51.100.7')),
    xff('client behind one more trusted proxy', '198.51.100.7, 10.0.0.2', via('198.51.100.7')),
    xff('client-written entries left of the first untrusted one are ignored', '203.0.113.66, 198.51.100.7', via('198.51.100.7')),
    xff('spoofed prefix behind a trusted chain', '203.0.113.66, 198.51.100.7, 10.0.0.2', via('198.51.100.7')),
    xff('hop limit reached inside a trusted chain: the last entry walked', '198.51.100.7, 10.0.0.3, 10.0.0.2', via('10.0.0.3')),
    xff('a larger hop limit reaches the client', '198.51.100.7, 10.0.0.3, 10.0.0.2', via('198.51.100.7'), { trustedHops: 3 }),
    xff('all-trusted chain: the leftmost entry', '10.0.0.4, 10.0.0.3, 10.0.0.2', via('10.0.0.4'), { trustedHops: 5 }),
    xff('trusted_hops 1: the entry our peer appended', '198.51.100.7, 10.0.0.2', via('10.0.0.2'), { trustedHops: 1 }),
    xff('trusted_hops 0: lists are never believed', '198.51.100.7', fromPeer, { trustedHops: 0 }),
    xff('multiple header lines as Node joins them', '198.51.100.7, 10.0.0.2', via('198.51.100.7')),
    xff('multiple header lines as an array', ['203.0.113.66', '198.51.100.7', '10.0.0.2'], via('198.51.100.7')),
    xff('empty list elements are skipped and do not count', ' ,198.51.100.7 ,, ,\t10.0.0.2 , ,', via('198.51.100.7')),
    xff('IPv4 with a port (as some load balancers write it)', '198.51.100.7:4711', via('198.51.100.7')),
    xff('bare IPv6', '2001:db8::7', via('2001:db8::7')),
    xff('bracketed IPv6 with a port', '[2001:db8::7]:4711', via('2001:db8::7')),
    xff('IPv4-mapped IPv6 is the IPv4 address', '::ffff:198.51.100.7', via('198.51.100.7')),
    xff('IPv4-mapped trusted proxy is skipped', '198.51.100.7, ::ffff:10.0.0.2', via('198.51.100.7')),
    xff('upper-case IPv6 is compressed and lower-cased', '2001:DB8:0:0:1:0:0:7', via('2001:db8::1:0:0:7')),
    xff('IPv6 trusted chain', '2001:db8::7, 2001:db8:ffff::2', via('2001:db8::7')),
    { name: 'IPv6 trusted peer', peer: '2001:db8:ffff::1', headers: { 'x-forwarded-for': '2001:db8::7' }, expect: via('2001:db8::7') },
    {
      name: 'IPv4-mapped trusted peer',
      peer: '::ffff:10.0.0.1',
      headers: { 'x-forwarded-for': '198.51.100.7' },
      expect: via('198.51.100.7'),
    },
    // Entries that are not addresses end the walk; nginx keeps the last address found.
    xff('garbage nearest to us: the header yields nothing', '198.51.100.7, garbage', fromPeer),
    xff('garbage behind a trusted proxy: that proxy', 'garbage, 10.0.0.2', via('10.0.0.2')),
    xff('"unknown" behind a trusted proxy: that proxy', '198.51.100.7, unknown, 10.0.0.2', via('10.0.0.2'), { trustedHops: 3 }),
    xff('IPv4 port out of range', '198.51.100.7:65536', fromPeer),
    xff('empty header', '', fromPeer),
    xff('only commas', ', , ,', fromPeer),
    {
      name: 'a header yielding nothing falls through to the next',
      headers: { 'x-forwarded-for': '198.51.100.7, garbage', 'x-client-ip': '198.51.100.8' },
      expect: ok('198.51.100.8', 'x-client-ip'),
    },
  ]);
});

describe('Forwarded (RFC 7239)', () => {
  const fwd = (name: string, value: string | string[], expect: ClientIpResult, extra: Partial<ClientIpPolicy> = {}): Case => ({
    name,
    // Node joins repeated Forwarded lines into a string; an array is tested too.
    headers: { forwarded: value } as IncomingHttpHeaders,
    policy: { clientIpHeaders: ['Forwarded'], ...extra },
    expect,
  });
  const via = (ip: string): ClientIpResult => ok(ip, 'forwarded');
  runTable([
    fwd('quoted IPv6 with a port', 'for="[2001:db8:cafe::17]:4711"', via('2001:db8:cafe::17')),
    fwd('quoted IPv6 without a port', 'for="[2001:db8:cafe::17]"', via('2001:db8:cafe::17')),
    fwd('other parameters around for=', 'for=192.0.2.60;proto=http;by=203.0.113.43', via('192.0.2.60')),
    fwd('for= not first', 'proto=https;for=192.0.2.60', via('192.0.2.60')),
    fwd('OWS around ";"', 'for=192.0.2.60 ; proto=http', via('192.0.2.60')),
    fwd('two elements: the rightmost untrusted one', 'for=192.0.2.43, for=198.51.100.17', via('198.51.100.17')),
    fwd('client behind a trusted proxy', 'for=192.0.2.43, for=10.0.0.2', via('192.0.2.43')),
    fwd('hop limit inside a trusted chain', 'for=192.0.2.43, for=10.0.0.3, for=10.0.0.2', via('10.0.0.3')),
    fwd('all-trusted chain', 'for=10.0.0.4, for=10.0.0.3', via('10.0.0.4'), { trustedHops: 8 }),
    fwd('multiple header lines as Node joins them', 'for=192.0.2.43, for=10.0.0.2;proto=https', via('192.0.2.43')),
    fwd('multiple header lines as an array', ['for=192.0.2.43', 'for=10.0.0.2'], via('192.0.2.43')),
    fwd('case-insensitive parameter name', 'FOR=192.0.2.43', via('192.0.2.43')),
    fwd('quoted IPv4 with a port', 'For="192.0.2.43:8080"', via('192.0.2.43')),
    fwd('IPv4-mapped in brackets', 'for="[::ffff:192.0.2.43]"', via('192.0.2.43')),
    fwd('quoted-pair inside the node is unescaped', 'for="192.0.2.4\\3"', via('192.0.2.43')),
    fwd('obfuscated port', 'for="[2001:db8::17]:_p0rt"', via('2001:db8::17')),
    fwd('comma and escaped quote inside a quoted-string', 'for=192.0.2.43, for=10.0.0.2;by="a,\\"b,c"', via('192.0.2.43')),
    fwd('escaped backslash before a closing quote', 'for=192.0.2.43;by="x\\\\", for=10.0.0.2;by="y,\\\\\\"z"', via('192.0.2.43')),
    fwd("client-written unbalanced quote left of our proxy's element", 'for="203.0.113.66, for=192.0.2.43', via('192.0.2.43')),
    // Nodes that name no address end the walk.
    fwd('unknown', 'for=unknown', fromPeer),
    fwd('unknown nearest to us', 'for=192.0.2.43, for=unknown', fromPeer),
    fwd('unknown behind a trusted proxy: that proxy', 'for=unknown, for=10.0.0.2', via('10.0.0.2')),
    fwd('obfuscated behind a trusted proxy: that proxy', 'for=_hidden, for="_x:_y", for=10.0.0.2', via('10.0.0.2'), { trustedHops: 3 }),
    fwd('element without for=', 'proto=https;by=10.0.0.2', fromPeer),
    fwd('unquoted IPv6 is not a token', 'for=[2001:db8::17]', fromPeer),
    fwd('IPv6 without brackets', 'for="2001:db8::17"', fromPeer),
    fwd('bracketed IPv4', 'for="[192.0.2.43]"', fromPeer),
    fwd('unquoted port', 'for=192.0.2.43:80', fromPeer),
    fwd('repeated parameter in one element', 'for=192.0.2.43;for=198.51.100.17', fromPeer),
    fwd('empty value', 'for=', fromPeer),
    fwd('no value', 'for', fromPeer),
    fwd('unterminated quoted-string', 'for="192.0.2.43', fromPeer),
    fwd('trailing junk after a value', 'for=192.0.2.43 x', fromPeer),
    fwd('control character in a quoted-string', 'for="192.0.2.43\u0001"', fromPeer),
    fwd('only separators', ';;, ,;', fromPeer),
    fwd('zone in the node', 'for="[fe80::1%25eth0]"', fromPeer),
  ]);
});

describe('require_proxy_headers', () => {
  const required = { requireProxyHeaders: true };
  runTable([
    {
      name: 'trusted peer without headers',
      headers: {},
      policy: required,
      expect: { ok: false, reason: 'missing_proxy_headers', clientIp: PROXY },
    },
    {
      name: 'trusted peer with only malformed headers',
      headers: { 'x-real-ip': 'nope', 'x-forwarded-for': 'garbage' },
      policy: required,
      expect: { ok: false, reason: 'missing_proxy_headers', clientIp: PROXY },
    },
    {
      name: 'trusted peer with a header',
      headers: { 'x-real-ip': '198.51.100.7' },
      policy: required,
      expect: ok('198.51.100.7', 'x-real-ip'),
    },
    { name: 'trust_proxy off', headers: {}, policy: { ...required, trustProxy: false }, expect: fromPeer },
  ]);
});

describe('reject_private_ip', () => {
  const PRIVATE = [
    '10.0.0.1',
    '10.255.255.255',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.0.1',
    '192.168.255.255',
    '100.64.0.1',
    '100.127.255.255',
    '127.0.0.1',
    '127.255.255.254',
    '169.254.0.1',
    '169.254.255.255',
    '0.0.0.0',
    'fc00::1',
    'fdff:ffff::1',
    'fe80::1',
    'febf:ffff::1',
    '::1',
    '::',
    '::ffff:10.0.0.1',
    '::ffff:127.0.0.1',
    '::ffff:192.168.1.1',
    '::ffff:100.64.0.1',
    '0:0:0:0:0:0:0:1',
  ];
  const PUBLIC = [
    '8.8.8.8',
    '1.1.1.1',
    '198.51.100.7',
    '203.0.113.9',
    '11.0.0.0',
    '9.255.255.255',
    '172.15.255.255',
    '172.32.0.0',
    '192.167.255.255',
    '192.169.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '126.255.255.255',
    '128.0.0.0',
    '169.253.255.255',
    '169.255.0.0',
    '2001:db8::1',
    '2606:4700::1111',
    'fbff::1',
    'fec0::1',
    'fe7f::1',
    '::2',
    '::ffff:8.8.8.8',
  ];
  for (const ip of PRIVATE) it(`${ip} is private`, () => assert.equal(isPrivateIp(ip), true));
  for (const ip of PUBLIC) it(`${ip} is public`, () => assert.equal(isPrivateIp(ip), false));
  it('text that is not an address is not private', () => {
    for (const text of ['', 'localhost', '10.0.0', '[::1]', 'fe80::1%lo']) assert.equal(isPrivateIp(text), false, text);
  });

  const reject = { rejectPrivateIp: true };
  runTable([
    {
      name: 'private client behind a trusted proxy',
      headers: { 'x-forwarded-for': '192.168.1.5' },
      policy: reject,
      expect: { ok: false, reason: 'private_ip', clientIp: '192.168.1.5' },
    },
    {
      name: 'IPv4-mapped private client',
      headers: { 'x-real-ip': '::ffff:10.9.9.9' },
      policy: reject,
      expect: { ok: false, reason: 'private_ip', clientIp: '10.9.9.9' },
    },
    {
      name: 'public client behind a trusted proxy',
      headers: { 'x-forwarded-for': '198.51.100.7' },
      policy: reject,
      expect: ok('198.51.100.7', 'x-forwarded-for'),
    },
    // With it on, the proxy itself (private) is refused when it names no client, and so is loopback.
    {
      name: 'trusted private proxy without headers',
      headers: {},
      policy: reject,
      expect: { ok: false, reason: 'private_ip', clientIp: PROXY },
    },
    {
      name: 'loopback peer',
      peer: '127.0.0.1',
      headers: {},
      policy: reject,
      expect: { ok: false, reason: 'private_ip', clientIp: '127.0.0.1' },
    },
    { name: 'IPv6 loopback peer', peer: '::1', headers: {}, policy: reject, expect: { ok: false, reason: 'private_ip', clientIp: '::1' } },
    { name: 'public peer', peer: '203.0.113.9', headers: {}, policy: reject, expect: ok('203.0.113.9') },
    {
      name: 'a peer that is not an address is not public',
      peer: '',
      headers: {},
      policy: reject,
      expect: { ok: false, reason: 'private_ip', clientIp: '' },
    },
    {
      name: 'missing proxy headers is reported before private',
      headers: {},
      policy: { ...reject, requireProxyHeaders: true },
      expect: { ok: false, reason: 'missing_proxy_headers', clientIp: PROXY },
    },
  ]);
});

describe('bounded work on hostile input', () => {
  const onlyXff = policy({ clientIpHeaders: ['X-Forwarded-For'] });
  const onlyForwarded = policy({ clientIpHeaders: ['Forwarded'] });

  it("padding the client-written part of X-Forwarded-For does not hide our proxy's entry", () => {
    const padded = `${'a'.repeat(1_000_000)}, 198.51.100.7`;
    assert.deepEqual(resolveClientIp(PROXY, { 'x-forwarded-for': padded }, onlyXff), ok('198.51.100.7', 'x-forwarded-for'));
  });

  it('an entry cut by the 8 KiB scan window is not read', () => {
    // The window starts inside "198.51.100.7": the "8.51.100.7" it sees is not the entry.
    const tail = `8.51.100.7${' '.repeat(8192 - 20)}, 10.0.0.2`;
    assert.equal(tail.length, 8192);
    const headers = { 'x-forwarded-for': `19${tail}` };
    assert.deepEqual(resolveClientIp(PROXY, headers, onlyXff), ok('10.0.0.2', 'x-forwarded-for'));
    // The same tail, whole, is read.
    assert.deepEqual(resolveClientIp(PROXY, { 'x-forwarded-for': tail }, onlyXff), ok('8.51.100.7', 'x-forwarded-for'));
  });

  it('a long trusted chain is walked at most trusted_hops entries', () => {
    const chain = [...Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.1`), '10.200.0.1'].join(', ');
    const result = resolveClientIp(PROXY, { 'x-forwarded-for': chain }, policy({ clientIpHeaders: ['X-Forwarded-For'], trustedHops: 64 }));
    // 64 entries from the right, counting 10.200.0.1 as the first.
    assert.deepEqual(result, ok('10.38.209.1', 'x-forwarded-for'));
  });

  it('an oversized single-value header is malformed', () => {
    const headers = { 'x-real-ip': `198.51.100.7${' '.repeat(10_000)}`, 'x-forwarded-for': '198.51.100.8' };
    assert.deepEqual(resolveClientIp(PROXY, headers, policy()), ok('198.51.100.8', 'x-forwarded-for'));
  });

  it('Forwarded: a huge unterminated quoted-string left of our element', () => {
    const value = `for="${'x'.repeat(1_000_000)}, for=198.51.100.7`;
    assert.deepEqual(resolveClientIp(PROXY, { forwarded: value }, onlyForwarded), ok('198.51.100.7', 'forwarded'));
  });

  it('worst cases stay fast', () => {
    const hostile: IncomingHttpHeaders[] = [
      { forwarded: '\\"'.repeat(500_000) },
      { forwarded: `${'\\'.repeat(500_000)}"` },
      { forwarded: `${'"\\'.repeat(500_000)}, for=10.0.0.2` },
      { forwarded: 'for=10.0.0.2,'.repeat(100_000) },
      { 'x-forwarded-for': ','.repeat(1_000_000) },
      { 'x-forwarded-for': '10.0.0.2, '.repeat(100_000) },
      { 'x-real-ip': '['.repeat(1_000_000) },
    ];
    const deep = policy({ trustedHops: 64 });
    const started = performance.now();
    for (let round = 0; round < 200; round++) for (const headers of hostile) resolveClientIp(PROXY, headers, deep);
    // 1400 calls over inputs up to 1 MB: linear scans of an 8 KiB window take
    // a few ms in all; anything quadratic would take minutes.
    assert.ok(performance.now() - started < 5_000, `took ${Math.round(performance.now() - started)} ms`);
  });
});

describe('normalisation: one client, one string', () => {
  it('every spelling of one address yields the same key', () => {
    const spellings = ['2001:db8::7', '2001:DB8::7', '2001:0db8:0:0:0:0:0:7', '[2001:db8::7]', '[2001:db8:0::7]:80'];
    const keys = new Set(spellings.map((s) => (resolveClientIp(PROXY, { 'x-real-ip': s }, policy()) as { clientIp: string }).clientIp));
    assert.deepEqual([...keys], ['2001:db8::7']);
  });

  it('RFC 5952: longest zero run compressed, first on a tie, single zero group kept', () => {
    const cases: [string, string][] = [
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['::ffff:0:0', '0.0.0.0'], // IPv4-mapped
    ];
    for (const [input, canonical] of cases) {
      assert.deepEqual(resolveClientIp(input, {}, policy({ trustProxy: false })), ok(canonical), input);
    }
  });

  it('short fuzz: never throws; the answer is the peer or a canonical address', () => {
    let seed = 0x2545f491;
    const random = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const alphabet = '0123456789abcdefABCDEF.:[],;="\\ _\tforunknwFOR%';
    const names = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'cf-connecting-ip'];
    const fuzzPolicy = policy({ trustedHops: 5, clientIpHeaders: DEFAULT_HEADERS });
    const deadline = performance.now() + 1_000;
    while (performance.now() < deadline) {
      let value = '';
      const length = random(80);
      for (let i = 0; i < length; i++) value += alphabet[random(alphabet.length)];
      const headers = { [names[random(names.length)]!]: value };
      const result = resolveClientIp(PROXY, headers, fuzzPolicy);
      assert.equal(result.ok, true);
      const parsed = parseIp(result.clientIp);
      assert.ok(parsed !== null, `not an address: ${result.clientIp} from ${JSON.stringify(headers)}`);
      const again = resolveClientIp(result.clientIp, {}, fuzzPolicy);
      assert.equal(again.clientIp, result.clientIp, 'canonical form is stable');
    }
  });
});

describe('through a real server: how Node presents repeated header lines', () => {
  async function resolveOverSocket(raw: string, clientPolicy: ClientIpPolicy): Promise<ClientIpResult> {
    let seen: ClientIpResult | null = null;
    const server = http.createServer((req, res) => {
      seen = resolveClientIp(req.socket.remoteAddress ?? '', req.headers, clientPolicy);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.end(raw));
        socket.on('error', reject);
        socket.on('close', () => resolve());
        socket.resume();
      });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.ok(seen !== null, 'the request reached the handler');
    return seen;
  }

  const request = [
    'GET / HTTP/1.1',
    'Host: example.test',
    'X-Real-IP: 198.51.100.1',
    'X-Real-IP: 198.51.100.2',
    'X-Forwarded-For: 203.0.113.5',
    'X-Forwarded-For: 198.51.100.9',
    'Forwarded: for=198.51.100.10',
    'Connection: close',
    '',
    '',
  ].join('\r\n');

  it('loopback as a trusted proxy: repeated X-Real-IP is ignored, X-Forwarded-For lines are one list', async () => {
    const loopbackTrusted = policy({ trustedProxies: new CidrSet(['127.0.0.0/8', '::1/128']) });
    assert.deepEqual(await resolveOverSocket(request, loopbackTrusted), ok('198.51.100.9', 'x-forwarded-for'));
  });

  it('loopback untrusted: every header is ignored', async () => {
    assert.deepEqual(await resolveOverSocket(request, policy()), ok('127.0.0.1'));
  });
});
