/**
 * The control socket's catalogue (src/ipc/control.ts): a request line is
 * one of the known commands with bounded fields, or it is refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_BAN_SECONDS, parseControlRequest } from '../../src/ipc/control.js';

describe('control requests', () => {
  const accepted: readonly [string, unknown][] = [
    ['{"command":"status"}', { command: 'status' }],
    ['{"command":"reload","extra":1}', { command: 'reload' }],
    ['{"command":"stop"}', { command: 'stop' }],
    ['{"command":"certs"}', { command: 'certs' }],
    ['{"command":"ban_list"}', { command: 'ban_list' }],
    ['{"command":"ban_add","ip":"192.0.2.1"}', { command: 'ban_add', ip: '192.0.2.1', reason: '' }],
    [
      `{"command":"ban_add","ip":"192.0.2.1","seconds":${MAX_BAN_SECONDS},"reason":"scanner"}`,
      { command: 'ban_add', ip: '192.0.2.1', reason: 'scanner', seconds: MAX_BAN_SECONDS },
    ],
    ['{"command":"ban_remove","ip":"2001:db8::1"}', { command: 'ban_remove', ip: '2001:db8::1' }],
  ];
  for (const [line, request] of accepted) it(`takes ${line}`, () => assert.deepEqual(parseControlRequest(line), request));

  const refused = [
    '',
    'status',
    'null',
    '[]',
    '{"command":"shell"}',
    '{"command":"ban_add"}',
    `{"command":"ban_add","ip":"${'1'.repeat(65)}"}`,
    `{"command":"ban_add","ip":"192.0.2.1","reason":"${'x'.repeat(201)}"}`,
    '{"command":"ban_add","ip":"192.0.2.1","seconds":0}',
    '{"command":"ban_add","ip":"192.0.2.1","seconds":1.5}',
    `{"command":"ban_add","ip":"192.0.2.1","seconds":${MAX_BAN_SECONDS + 1}}`,
    '{"command":"ban_add","ip":"192.0.2.1","reason":7}',
    '{"command":"ban_remove","ip":7}',
  ];
  for (const line of refused) it(`refuses ${JSON.stringify(line)}`, () => assert.equal(parseControlRequest(line), null));
});
