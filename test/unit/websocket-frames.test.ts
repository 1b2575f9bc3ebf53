/**
 * WebSocket framing as the proxy follows it (src/worker/websocket/frames.ts)
 * and the handshake helpers (handshake.ts): boundaries found whatever the
 * chunking, a close frame put only between frames, client frames checked,
 * and a time-boxed fuzz run over random frames cut at random points.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { describe, it } from 'node:test';
import { acceptFor, upgradeTokens } from '../../src/worker/websocket/handshake.js';
import { closeFrame, FrameStream } from '../../src/worker/websocket/frames.js';
import { encodeFrame, FrameReader } from '../support/websocket.js';

const forwarded = (stream: FrameStream, chunks: Buffer[], stopAtBoundary = false) => {
  const out: Buffer[] = [];
  let stopped = false;
  let violation: string | null = null;
  for (const chunk of chunks) {
    const read = stream.read(chunk, stopAtBoundary);
    out.push(...read.forward);
    if (read.violation !== null) {
      violation = read.violation;
      break;
    }
    if (read.stopped) {
      stopped = true;
      break;
    }
  }
  return { bytes: Buffer.concat(out), stopped, violation };
};

describe('handshake', () => {
  it('computes the Sec-WebSocket-Accept of RFC 6455 §1.3', () => {
    assert.equal(acceptFor('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('reads the protocols an Upgrade field lists, without versions', () => {
    assert.deepEqual(upgradeTokens('WebSocket'), ['websocket']);
    assert.deepEqual(upgradeTokens('h2c, foo/2 ,  '), ['h2c', 'foo']);
    assert.deepEqual(upgradeTokens(undefined), []);
  });
});

describe('frame boundaries', () => {
  const frames = [
    encodeFrame(0x1, 'hello', true),
    encodeFrame(0x2, Buffer.alloc(300, 1), true),
    encodeFrame(0x2, Buffer.alloc(70_000, 2), true),
    encodeFrame(0x9, '', true),
  ];
  const stream = Buffer.concat(frames);

  it('passes every byte on, in order, however the stream is cut', () => {
    for (const cut of [1, 2, 3, 7, 13, 1000, stream.length]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += cut) chunks.push(stream.subarray(i, i + cut));
      const result = forwarded(new FrameStream(true), chunks);
      assert.equal(result.violation, null);
      assert.ok(result.bytes.equals(stream), `cut every ${cut} bytes`);
    }
  });

  it('stops exactly at the next boundary when asked, never inside a frame', () => {
    const follower = new FrameStream(true);
    // Half of the second frame has passed: the boundary is at its end.
    const first = follower.read(stream.subarray(0, frames[0]!.length + 100));
    assert.equal(first.stopped, false);
    assert.equal(follower.atBoundary, false);
    const rest = follower.read(stream.subarray(frames[0]!.length + 100), true);
    assert.equal(rest.stopped, true);
    assert.equal(Buffer.concat(rest.forward).length, frames[1]!.length - 100);
    assert.equal(follower.atBoundary, true);
  });

  it('holds a header split across reads until it is whole', () => {
    const follower = new FrameStream(true);
    const frame = encodeFrame(0x2, Buffer.alloc(70_000), true);
    const a = follower.read(frame.subarray(0, 3));
    assert.deepEqual(a.forward, [], 'nothing of an unfinished header passes');
    const b = follower.read(frame.subarray(3));
    assert.ok(Buffer.concat(b.forward).equals(frame));
  });

  it('refuses client frames that break RFC 6455, passing nothing of them', () => {
    const cases: [string, Buffer][] = [
      ['unmasked', encodeFrame(0x1, 'x', false)],
      ['reserved opcode', encodeFrame(0x3, 'x', true)],
      ['fragmented control frame', encodeFrame(0x9, 'x', true, false)],
      ['control frame over 125 bytes', encodeFrame(0x8, Buffer.alloc(126), true)],
      ['a length past 2^53', Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])],
    ];
    for (const [name, bad] of cases) {
      const good = encodeFrame(0x1, 'ok', true);
      const result = forwarded(new FrameStream(true), [Buffer.concat([good, bad])]);
      assert.notEqual(result.violation, null, name);
      assert.ok(result.bytes.equals(good), `${name}: only the frame before passes`);
    }
  });

  it('does not check what an upstream sends (unmasked is what servers send)', () => {
    const frame = encodeFrame(0x1, 'from the server', false);
    assert.equal(new FrameStream(false).read(frame).violation, null);
  });

  it('a gigabyte frame is counted, not held: each chunk passes as it comes', () => {
    const follower = new FrameStream(true);
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]);
    assert.equal(Buffer.concat(follower.read(header).forward).length, header.length);
    for (let i = 0; i < 10; i++) {
      const chunk = Buffer.alloc(64 * 1024);
      const read = follower.read(chunk, true);
      assert.equal(read.stopped, false, 'no boundary inside the frame');
      assert.equal(read.forward[0]!.buffer, chunk.buffer, 'a view of the chunk, not a copy');
    }
  });

  it('close frames: unmasked to clients, masked to upstreams, both readable', () => {
    for (const masked of [false, true]) {
      const reader = new FrameReader();
      reader.push(closeFrame(1001, masked));
      const [frame] = reader.frames;
      assert.equal(frame?.opcode, 0x8);
      assert.equal(frame?.masked, masked);
      assert.equal(frame?.payload.readUInt16BE(0), 1001);
    }
  });
});

describe('fuzz: random frames cut at random points (time-boxed)', () => {
  it('forwards exactly the frames, and a boundary stop lands on a frame edge', () => {
    const until = Date.now() + 2000;
    let rounds = 0;
    while (Date.now() < until) {
      rounds++;
      const frames = Array.from({ length: randomInt(1, 8) }, () => {
        const size = [0, 1, 125, 126, 127, 65535, 65536, randomInt(0, 3000)][randomInt(0, 8)]!;
        return encodeFrame([0x0, 0x1, 0x2][randomInt(0, 3)]!, randomBytes(size), true, true);
      });
      const stream = Buffer.concat(frames);
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; ) {
        const size = randomInt(1, 5000);
        chunks.push(stream.subarray(i, i + size));
        i += size;
      }
      const all = forwarded(new FrameStream(true), chunks);
      assert.equal(all.violation, null);
      assert.ok(all.bytes.equals(stream));
      // Ask to stop from a random chunk on: what passed is a whole number of frames.
      const follower = new FrameStream(true);
      const from = randomInt(0, chunks.length);
      const before = forwarded(follower, chunks.slice(0, from));
      const after = forwarded(follower, chunks.slice(from), true);
      const passed = before.bytes.length + after.bytes.length;
      const edges = [0];
      for (const frame of frames) edges.push(edges.at(-1)! + frame.length);
      assert.ok(edges.includes(passed), `stopped at ${passed}, frame edges ${edges.join(',')}`);
    }
    assert.ok(rounds > 10);
  });
});
