/**
 * A worker's stdout/stderr as the master reads it (src/master/worker-output.ts):
 * lines are cut at MAX_LINE_BYTES whether or not a newline ever comes, and a
 * JSON line gets the worker's identity as its last keys, which win.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { MAX_LINE_BYTES, readBoundedLines, withIdentity } from '../../src/master/worker-output.js';

describe("a worker's output", () => {
  it('cuts a line that never ends at MAX_LINE_BYTES, holding no more than that', () => {
    const stream = new PassThrough();
    const lines: [number, boolean][] = [];
    readBoundedLines(stream, (line, truncated) => lines.push([line.length, truncated]));
    for (let i = 0; i < 100; i++) stream.write(Buffer.alloc(64 * 1024, 0x61));
    stream.write('\nnext\n');
    assert.deepEqual(lines, [
      [MAX_LINE_BYTES, true],
      [4, false],
    ]);
  });

  it('keeps lines split across chunks whole', () => {
    const stream = new PassThrough();
    const lines: string[] = [];
    readBoundedLines(stream, (line) => lines.push(line));
    stream.write('{"a"');
    stream.write(':1}\n{"b":2}\n{"c"');
    stream.write(':3}\n');
    assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  it("appends the worker's identity last, where it wins over a forged one", () => {
    const tagged = withIdentity('{"role":"master","pid":1,"msg":"forged"}', { role: 'worker', pid: 42, slot: 0 });
    assert.deepEqual(JSON.parse(tagged!), { role: 'worker', pid: 42, msg: 'forged', slot: 0 });
    assert.deepEqual(JSON.parse(withIdentity('{}', { role: 'worker', pid: 1, slot: 2 })!), { role: 'worker', pid: 1, slot: 2 });
  });

  it('wraps what is not one JSON object', () => {
    for (const line of ['plain text', '{"a":"}', '[1]', '{"a":1} trailing', `${'{'.repeat(100)}${'}'.repeat(100)}`])
      assert.equal(withIdentity(line, { role: 'worker', pid: 1, slot: 0 }), null, line);
  });
});
