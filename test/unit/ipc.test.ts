/**
 * The channel's catalogue: a worker's message is accepted only in exactly
 * one of the catalogue's shapes, with names from the worker's closed
 * vocabulary; anything else is fatal for that worker. Decoding a frame
 * never throws, whatever its bytes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_WORKER_FRAME_BYTES } from '../../src/ipc/frames.js';
import { decodeWorkerMessage, isFault, parseWorkerMessage } from '../../src/ipc/messages.js';

describe('worker -> master messages', () => {
  it('accepts CTL_READY with a generation', () => {
    assert.deepEqual(parseWorkerMessage({ type: 'CTL_READY', generation: 3 }), { type: 'CTL_READY', generation: 3 });
  });

  const accepted: [string, unknown][] = [
    ['LIM_CONNECT', { type: 'LIM_CONNECT', id: 1, ip: '192.0.2.1' }],
    ['LIM_CONNECT from IPv6', { type: 'LIM_CONNECT', id: 2, ip: '2001:db8::1' }],
    ['LIM_CLOSED', { type: 'LIM_CLOSED', ips: ['192.0.2.1', '192.0.2.1'] }],
    ['LIM_LEASE', { type: 'LIM_LEASE', id: 3, ip: '192.0.2.1', want: 4 }],
    ['LIM_REPORT', { type: 'LIM_REPORT', entries: [['192.0.2.1', 2, 0]] }],
    ['IDS_MATCH', { type: 'IDS_MATCH', ip: '192.0.2.1', rule: 'sqli', score: 5 }],
    ['MET_SCRAPE', { type: 'MET_SCRAPE', id: 9 }],
    ['DASH_QUERY', { type: 'DASH_QUERY', id: 10 }],
    [
      'MET_REPORT',
      {
        type: 'MET_REPORT',
        connections: 3,
        requests: [
          ['example.com', 200, 5],
          ['', 421, 1],
          ['*', 404, 2],
        ],
        rejections: [['request.rate_limited', 7]],
        idsMatches: [['no-wp', 1]],
      },
    ],
    ['an empty MET_REPORT', { type: 'MET_REPORT', connections: 0, requests: [], rejections: [], idsMatches: [] }],
    ['CTL_PONG', { type: 'CTL_PONG', seq: 4 }],
    [
      "an AUDIT_EVENT of the worker's vocabulary",
      { type: 'AUDIT_EVENT', event: { event: 'request.bad', status: 400, clientIp: '192.0.2.1' } },
    ],
  ];
  for (const [name, message] of accepted) {
    it(`accepts ${name}`, () => assert.deepEqual(parseWorkerMessage(message), message));
  }

  const rejected: [string, unknown][] = [
    ['an address that is not canonical', { type: 'LIM_CONNECT', id: 1, ip: '::ffff:192.0.2.1' }],
    ['something that is not an address', { type: 'LIM_CONNECT', id: 1, ip: 'example.com' }],
    ['an empty LIM_CLOSED', { type: 'LIM_CLOSED', ips: [] }],
    ['a LIM_CLOSED over the batch size', { type: 'LIM_CLOSED', ips: Array.from({ length: 49 }, () => '192.0.2.1') }],
    ['a lease of a million and one tokens', { type: 'LIM_LEASE', id: 3, ip: '192.0.2.1', want: 1_000_001 }],
    ['a report entry of the wrong shape', { type: 'LIM_REPORT', entries: [['192.0.2.1', 2]] }],
    ['an IDS rule name with a space', { type: 'IDS_MATCH', ip: '192.0.2.1', rule: 'no wp', score: 5 }],
    ['a status outside 100-999', { type: 'MET_REPORT', connections: 0, requests: [['a.test', 1000, 1]], rejections: [], idsMatches: [] }],
    ['a vhost label with a quote', { type: 'MET_REPORT', connections: 0, requests: [['a"b', 200, 1]], rejections: [], idsMatches: [] }],
    [
      'a rejection reason that is not an event name',
      { type: 'MET_REPORT', connections: 0, requests: [], rejections: [['DROP TABLE', 1]], idsMatches: [] },
    ],
    ['null', null],
    ['a string', 'CTL_READY'],
    ['an array', [{ type: 'CTL_READY', generation: 1 }]],
    ['an unknown type', { type: 'CFG_INIT', generation: 1 }],
    ['a missing field', { type: 'CTL_READY' }],
    ['an extra field', { type: 'CTL_READY', generation: 1, extra: true }],
    ['a negative generation', { type: 'CTL_READY', generation: -1 }],
    ['a fractional generation', { type: 'CTL_READY', generation: 1.5 }],
    ['a string generation', { type: 'CTL_READY', generation: '1' }],
    ['an AUDIT_EVENT forging an admin event', { type: 'AUDIT_EVENT', event: { event: 'admin.ban_remove', clientIp: '192.0.2.1' } }],
    ['an AUDIT_EVENT forging a config event', { type: 'AUDIT_EVENT', event: { event: 'config.reload' } }],
    ['an AUDIT_EVENT of a name the worker never uses', { type: 'AUDIT_EVENT', event: { event: 'request.anything_at_all' } }],
    [
      "a rejection reason outside the worker's vocabulary",
      { type: 'MET_REPORT', connections: 0, requests: [], rejections: [['request.made_up', 1]], idsMatches: [] },
    ],
    ['a CTL_PONG without seq', { type: 'CTL_PONG' }],
    ['a Node IPC internal message', { cmd: 'NODE_HANDLE_ACK' }],
    ['a DASH_QUERY that asks for something', { type: 'DASH_QUERY', id: 1, section: 'bans' }],
    ['a DASH_QUERY without an id', { type: 'DASH_QUERY' }],
    ['a DASH_QUERY with a string id', { type: 'DASH_QUERY', id: '1' }],
    ['a DASH_STATE from a worker', { type: 'DASH_STATE', id: 1, json: '{}' }],
  ];
  for (const [name, message] of rejected) {
    it(`rejects ${name}`, () => assert.equal(parseWorkerMessage(message), null));
  }
});

describe('decoding a worker frame', () => {
  const decode = (text: string | Buffer) => decodeWorkerMessage(Buffer.isBuffer(text) ? text : Buffer.from(text));
  const faults: [string, Buffer | string, string][] = [
    ['garbage bytes', Buffer.from([0xde, 0xad, 0xbe, 0xef]), 'message.encoding'],
    ['a newline-terminated Node IPC line', '{"cmd":"NODE_HANDLE_ACK"}\n', 'message.catalogue'],
    ['text that is not JSON', 'x\n', 'message.json'],
    ['deep nesting (8,000 arrays)', `${'['.repeat(8000)}${']'.repeat(8000)}`, 'message.nesting'],
    ['nesting one level past the catalogue', '{"type":"CTL_READY","generation":[[[[1]]]]}', 'message.nesting'],
    ['a huge number', '{"type":"CTL_READY","generation":1e999}', 'message.catalogue'],
    ['a __proto__ key', '{"type":"CTL_READY","generation":1,"__proto__":{"x":1}}', 'message.catalogue'],
    ['an unknown type', '{"type":"CFG_INIT","generation":1}', 'message.catalogue'],
    ['a payload past the cap', `{"type":"CTL_READY","generation":1,"pad":"${'x'.repeat(MAX_WORKER_FRAME_BYTES)}"}`, 'message.catalogue'],
  ];
  for (const [name, payload, rule] of faults) {
    it(`refuses ${name} as ${rule}`, () => {
      const decoded = decode(payload);
      assert.ok(isFault(decoded), JSON.stringify(decoded));
      assert.equal(decoded.rule, rule);
    });
  }

  it('a message with a `rule` field (IDS_MATCH) is a message, not a fault', () => {
    const decoded = decode(JSON.stringify({ type: 'IDS_MATCH', ip: '192.0.2.1', rule: 'sqli', score: 5 }));
    assert.ok(!isFault(decoded));
    assert.equal(decoded.type, 'IDS_MATCH');
  });

  it('a string holding brackets is not nesting', () => {
    const decoded = decode(JSON.stringify({ type: 'AUDIT_EVENT', event: { event: 'request.bad', detail: '[[[[[[[[{{{{\\"' } }));
    assert.ok(!isFault(decoded), JSON.stringify(decoded));
  });

  it('never throws on random bytes (time-boxed fuzz)', () => {
    const until = performance.now() + 1000;
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const alphabet = Buffer.from('{}[]":,0123456789.eE+-truefalsnul\\ \tTYPE_type');
    while (performance.now() < until) {
      const length = random() % 200;
      const bytes = Buffer.alloc(length);
      for (let i = 0; i < length; i++) bytes[i] = random() % 3 === 0 ? random() % 256 : alphabet[random() % alphabet.length]!;
      decodeWorkerMessage(bytes);
    }
  });
});
