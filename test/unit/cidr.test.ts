/** src/net/cidr.ts: strict address parsing and CIDR matching, as tables. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CidrSet, formatIp, isValidCidr, parseCidr, parseIp } from '../../src/net/cidr.js';

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

describe('parseIp accepts', () => {
  const cases: [text: string, family: 4 | 6, bytesHex: string][] = [
    ['0.0.0.0', 4, '00000000'],
    ['1.2.3.4', 4, '01020304'],
    ['255.255.255.255', 4, 'ffffffff'],
    ['10.0.100.9', 4, '0a006409'],
    ['::', 6, '0'.repeat(32)],
    ['::1', 6, `${'0'.repeat(31)}1`],
    ['1::', 6, `0001${'0'.repeat(28)}`],
    ['2001:db8::ff00:42:8329', 6, '20010db8000000000000ff0000428329'],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', 6, '20010db8000000000000ff0000428329'],
    ['2001:DB8::FF00:42:8329', 6, '20010db8000000000000ff0000428329'],
    ['::ffff:1.2.3.4', 6, '00000000000000000000ffff01020304'],
    ['::1.2.3.4', 6, '00000000000000000000000001020304'],
    ['64:ff9b::192.0.2.33', 6, '0064ff9b0000000000000000c0000221'],
    ['1:2:3:4:5:6:7:8', 6, '00010002000300040005000600070008'],
    ['1:2:3:4:5:6:1.2.3.4', 6, '00010002000300040005000601020304'],
    ['1::3:4:5:6:7:8', 6, '00010000000300040005000600070008'], // "::" for a single zero group: RFC 4291 allows it
    ['ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255', 6, 'f'.repeat(32)],
  ];
  for (const [text, family, bytesHex] of cases) {
    it(text, () => {
      const parsed = parseIp(text);
      assert.ok(parsed);
      assert.equal(parsed.family, family);
      assert.equal(hex(parsed.bytes), bytesHex);
    });
  }
});

describe('parseIp rejects', () => {
  const cases: [text: string, why: string][] = [
    ['', 'empty'],
    ['01.2.3.4', 'leading zero (octal ambiguity)'],
    ['1.2.3.04', 'leading zero in the last octet'],
    ['00.1.2.3', 'double zero'],
    ['256.1.1.1', 'octet out of range'],
    ['1.2.3', 'three parts'],
    ['1.2.3.4.5', 'five parts'],
    ['1.2.3.4 ', 'trailing space'],
    [' 1.2.3.4', 'leading space'],
    ['1.2.3.-4', 'sign'],
    ['0x1.2.3.4', 'hex octet'],
    ['1.2.3.4/32', 'a CIDR is not an address'],
    ['::ffff:01.2.3.4', 'leading zero in an embedded IPv4'],
    [':::', 'triple colon'],
    ['1::2::3', 'two gaps'],
    ['1:2:3:4:5:6:7', 'seven groups without a gap'],
    ['1:2:3:4:5:6:7:8:9', 'nine groups'],
    ['1:2:3:4:5:6:7::8', 'eight groups and a gap'],
    ['12345::', 'five hex digits'],
    ['g::', 'not hex'],
    [':1:2:3:4:5:6:7', 'leading single colon'],
    ['1:2:3:4:5:6:7:', 'trailing single colon'],
    ['fe80::1%eth0', 'zone id'],
    ['1.2.3.4::', 'embedded IPv4 not at the end'],
    ['[::1]', 'brackets'],
    ['localhost', 'a name'],
  ];
  for (const [text, why] of cases) {
    it(`${JSON.stringify(text)} (${why})`, () => assert.equal(parseIp(text), null));
  }
});

describe('formatIp (RFC 5952)', () => {
  const cases: [input: string, canonical: string][] = [
    ['1.2.3.4', '1.2.3.4'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
    ['0:0:0:0:0:0:0:0', '::'],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1'],
    ['::ffff:a00:1', '::ffff:10.0.0.1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // the longest run wins
  ];
  for (const [input, canonical] of cases) {
    it(`${input} -> ${canonical}`, () => assert.equal(formatIp(parseIp(input)!.bytes), canonical));
  }
});

describe('parseCidr', () => {
  const valid: [text: string, family: 4 | 6, networkHex: string, prefixLength: number][] = [
    ['10.0.0.0/8', 4, '0a000000', 8],
    ['10.1.2.3/8', 4, '0a000000', 8], // host bits cleared
    ['1.2.3.4', 4, '01020304', 32],
    ['0.0.0.0/0', 4, '00000000', 0],
    ['2001:db8::/32', 6, `20010db8${'0'.repeat(24)}`, 32],
    ['::1', 6, `${'0'.repeat(31)}1`, 128],
    ['::ffff:10.0.0.0/104', 4, '0a000000', 8], // mapped range stored as IPv4
    ['::ffff:0:0/96', 4, '00000000', 0],
  ];
  for (const [text, family, networkHex, prefixLength] of valid) {
    it(`accepts ${text}`, () => {
      const cidr = parseCidr(text);
      assert.ok(cidr);
      assert.deepEqual(
        { family: cidr.family, network: hex(cidr.network), prefixLength: cidr.prefixLength },
        { family, network: networkHex, prefixLength },
      );
      assert.equal(isValidCidr(text), true);
    });
  }
  const invalid = [
    '10.0.0.0/33',
    '10.0.0.0/',
    '10.0.0.0/08',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    '::/129',
    '01.0.0.0/8',
    '/8',
    'fe80::/10%eth0',
    '10.0.0.0/ 8',
  ];
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      assert.equal(parseCidr(text), null);
      assert.equal(isValidCidr(text), false);
      assert.throws(() => new CidrSet([text]), RangeError);
    });
  }
});

describe('CidrSet.has', () => {
  const cases: [entries: string[], ip: string, expected: boolean][] = [
    [['10.0.0.0/8'], '10.255.1.2', true],
    [['10.0.0.0/8'], '11.0.0.0', false],
    [['10.0.0.0/8'], '9.255.255.255', false],
    [['192.168.1.0/24'], '192.168.1.255', true],
    [['192.168.1.0/24'], '192.168.2.0', false],
    [['172.16.0.0/12'], '172.31.255.255', true],
    [['172.16.0.0/12'], '172.32.0.0', false],
    [['1.2.3.4'], '1.2.3.4', true],
    [['1.2.3.4'], '1.2.3.5', false],
    [['0.0.0.0/0'], '255.255.255.255', true],
    [['128.0.0.0/1'], '127.255.255.255', false],
    [['128.0.0.0/1'], '128.0.0.0', true],
    // IPv4-mapped IPv6 peers (dual-stack listeners) match IPv4 entries.
    [['10.0.0.0/8'], '::ffff:10.1.2.3', true],
    [['10.0.0.0/8'], '::ffff:a01:203', true],
    [['10.0.0.0/8'], '::ffff:11.1.2.3', false],
    [['::ffff:10.0.0.0/104'], '10.9.9.9', true],
    // IPv6 entries match native IPv6 only.
    [['::/0'], '10.0.0.1', false],
    [['::/0'], '::ffff:10.0.0.1', false],
    [['::/0'], '2001:db8::1', true],
    [['2001:db8::/32'], '2001:db8:ffff::1', true],
    [['2001:db8::/32'], '2001:db9::1', false],
    [['2001:db8::/33'], '2001:db8:7fff::1', true],
    [['2001:db8::/33'], '2001:db8:8000::1', false],
    [['::1'], '::1', true],
    [['::1'], '0:0:0:0:0:0:0:1', true],
    [['::1'], '::2', false],
    [['2001:db8::1/127'], '2001:db8::', true],
    [['fe80::/10'], 'febf::1', true],
    [['fe80::/10'], 'fec0::1', false],
    [['::/127'], '::1', true],
    // Several entries, both families.
    [['10.0.0.0/8', '2001:db8::/32', '127.0.0.1'], '127.0.0.1', true],
    [['10.0.0.0/8', '2001:db8::/32', '127.0.0.1'], '2001:db8::5', true],
    [['10.0.0.0/8', '2001:db8::/32', '127.0.0.1'], '127.0.0.2', false],
    // Anything that is not strictly an address never matches.
    [['0.0.0.0/0'], '010.0.0.1', false],
    [['0.0.0.0/0'], '', false],
    [['0.0.0.0/0'], 'garbage', false],
    [['::/0'], 'fe80::1%lo', false],
    [[], '1.2.3.4', false],
  ];
  for (const [entries, ip, expected] of cases) {
    it(`${JSON.stringify(entries)} ${expected ? 'has' : 'lacks'} ${ip}`, () => assert.equal(new CidrSet(entries).has(ip), expected));
  }

  it('names the bad entry when constructed from an invalid list', () => {
    assert.throws(() => new CidrSet(['10.0.0.0/8', 'nope']), /"nope"/);
  });
});
