/**
 * The channel's framing (src/ipc/frames.ts): the length is checked against
 * the cap before a payload byte is kept; frames split across reads, or
 * several in one read, come out whole and in order; after a fault or the
 * consumer's verdict nothing more is delivered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeFrame, FrameReader, MAX_WORKER_FRAME_BYTES } from '../../src/ipc/frames.js';

const collect = (reader: FrameReader, chunks: Buffer[]): { frames: string[]; faults: unknown[] } => {
  const frames: string[] = [];
  const faults: unknown[] = [];
  for (const chunk of chunks) {
    const fault = reader.push(chunk, (payload) => {
      frames.push(payload.toString());
      return true;
    });
    if (fault !== null) faults.push(fault);
  }
  return { frames, faults };
};

describe('frames', () => {
  it('round-trips messages split at every byte', () => {
    const bytes = Buffer.concat([encodeFrame({ a: 1 }, 100), encodeFrame({ b: 'two' }, 100)]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { frames, faults } = collect(new FrameReader(100), [bytes.subarray(0, cut), bytes.subarray(cut)]);
      assert.deepEqual(frames, ['{"a":1}', '{"b":"two"}'], `cut at ${cut}`);
      assert.deepEqual(faults, []);
    }
  });

  it('refuses a header over the cap before buffering anything', () => {
    const reader = new FrameReader(MAX_WORKER_FRAME_BYTES);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xffffffff);
    const { frames, faults } = collect(reader, [header, Buffer.alloc(1024 * 1024)]);
    assert.deepEqual(frames, []);
    assert.deepEqual(faults, [{ kind: 'frame.size', announced: 0xffffffff }]);
    assert.equal(reader.bufferedBytes, 4, 'nothing past the header was kept');
  });

  it('refuses an empty frame', () => {
    assert.deepEqual(collect(new FrameReader(100), [Buffer.alloc(4)]).faults, [{ kind: 'frame.size', announced: 0 }]);
  });

  it('a never-ending frame holds at most its announced size, and says since when it waits', () => {
    const reader = new FrameReader(MAX_WORKER_FRAME_BYTES);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1000);
    collect(reader, [header, Buffer.alloc(999)]);
    assert.equal(reader.bufferedBytes, 1003);
    assert.notEqual(reader.partialSince, null);
  });

  it("delivers nothing after the consumer's verdict, in the same chunk or later", () => {
    const reader = new FrameReader(100);
    const seen: string[] = [];
    const frames = Buffer.concat([encodeFrame(1, 100), encodeFrame(2, 100), encodeFrame(3, 100)]);
    reader.push(frames, (payload) => {
      seen.push(payload.toString());
      return seen.length < 2;
    });
    reader.push(encodeFrame(4, 100), (payload) => {
      seen.push(payload.toString());
      return true;
    });
    assert.deepEqual(seen, ['1', '2']);
  });

  it('a sender never sends a frame over its cap', () => {
    assert.throws(() => encodeFrame('x'.repeat(200), 100), RangeError);
  });
});
