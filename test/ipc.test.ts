/**
 * The IPC catalogue: a worker's message is accepted only in exactly one of
 * the catalogue's shapes; anything else is fatal for that worker.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_WORKER_MESSAGE_BYTES, parseWorkerMessage } from '../src/ipc/messages.js';

describe('worker -> master messages', () => {
  it('accepts CTL_READY with a generation', () => {
    assert.deepEqual(parseWorkerMessage({ type: 'CTL_READY', generation: 3 }), { type: 'CTL_READY', generation: 3 });
  });

  const rejected: [string, unknown][] = [
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
  ];
  for (const [name, message] of rejected) {
    it(`rejects ${name}`, () => assert.equal(parseWorkerMessage(message), null));
  }
});
