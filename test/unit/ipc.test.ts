/**
 * The IPC catalogue: a worker's message is accepted only in exactly one of
 * the catalogue's shapes; anything else is fatal for that worker.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_WORKER_MESSAGE_BYTES, parseWorkerMessage } from '../../src/ipc/messages.js';

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
    ['an oversized message', { type: 'CTL_READY', generation: 1, pad: 'x'.repeat(MAX_WORKER_MESSAGE_BYTES) }],
    ['a DASH_QUERY that asks for something', { type: 'DASH_QUERY', id: 1, section: 'bans' }],
    ['a DASH_QUERY without an id', { type: 'DASH_QUERY' }],
    ['a DASH_QUERY with a string id', { type: 'DASH_QUERY', id: '1' }],
    ['a DASH_STATE from a worker', { type: 'DASH_STATE', id: 1, json: '{}' }],
  ];
  for (const [name, message] of rejected) {
    it(`rejects ${name}`, () => assert.equal(parseWorkerMessage(message), null));
  }
});
