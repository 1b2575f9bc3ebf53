/**
 * WebSocket framing (RFC 6455 §5.2) as a proxy needs it: where each frame
 * begins and ends, so that a close frame can be put between two frames
 * (never inside one) when the server drains, and the client's frame headers
 * checked before they reach the upstream. Payloads are never buffered: a
 * frame announcing a gigabyte streams through, bounded by the tunnel's
 * idle and write timeouts, not held here.
 *
 *   0                   1                   2                   3
 *   |F|R|R|R| opcode|M| len (7) | extended len (0, 16 or 64) | mask (0 or 32) | payload
 */
import { nodeCrypto } from '../../node-builtins.js';

const { randomBytes } = nodeCrypto;

/** RFC 6455 §7.4.1 status codes this proxy sends. */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_PROTOCOL_ERROR = 1002;

const OPCODE_CLOSE = 0x8;
/** RFC 6455 §5.2: data frames 0-2, control frames 8-10; the rest are reserved (§5.2 "MUST _Fail the WebSocket Connection_"). */
const KNOWN_OPCODES: ReadonlySet<number> = new Set([0x0, 0x1, 0x2, 0x8, 0x9, 0xa]);
/** RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented. */
const MAX_CONTROL_PAYLOAD = 125;
const MAX_HEADER_BYTES = 14;

/** What one read of a direction gives: the bytes to pass on, and why the stream must end, if it must. */
export interface FrameRead {
  /** In order; payload bytes are views of the chunk, a header is copied once complete. */
  readonly forward: Buffer[];
  /** A client frame breaking RFC 6455 (nothing of it is in `forward`), or null. */
  readonly violation: string | null;
  /** `stopAtBoundary` was asked and a frame boundary reached: whatever followed in the chunk is dropped. */
  readonly stopped: boolean;
}

/** One direction of a WebSocket connection, followed frame by frame. */
export class FrameStream {
  readonly #header = Buffer.alloc(MAX_HEADER_BYTES);
  #headerFill = 0;
  /** Header bytes of the frame being read: 2 until the second byte tells the rest. */
  #headerNeeded = 2;
  /** Payload bytes of the current frame still to pass. */
  #remaining = 0;
  #failed = false;

  /** `fromClient`: frames a client sends, which must be masked (RFC 6455 §5.1) and are checked. */
  constructor(private readonly fromClient: boolean) {}

  /** Between two frames: a frame may be put here. */
  get atBoundary(): boolean {
    return this.#remaining === 0 && this.#headerFill === 0;
  }

  /** Follows `chunk`; with `stopAtBoundary`, passes nothing past the first frame boundary. */
  read(chunk: Buffer, stopAtBoundary = false): FrameRead {
    const forward: Buffer[] = [];
    if (this.#failed) return { forward, violation: 'after a violation', stopped: false };
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - offset);
        forward.push(chunk.subarray(offset, offset + take));
        this.#remaining -= take;
        offset += take;
        continue;
      }
      if (stopAtBoundary && this.#headerFill === 0) return { forward, violation: null, stopped: true };
      this.#header[this.#headerFill++] = chunk[offset++]!;
      if (this.#headerFill === 2) {
        const violation = this.#checkStart();
        if (violation !== null) {
          this.#failed = true;
          return { forward, violation, stopped: false };
        }
      }
      if (this.#headerFill < this.#headerNeeded) continue;
      const length = this.#payloadLength();
      if (length === null) {
        this.#failed = true;
        return { forward, violation: 'a 64-bit length with its top bit set, or beyond 2^53', stopped: false };
      }
      forward.push(Buffer.from(this.#header.subarray(0, this.#headerFill)));
      this.#headerFill = 0;
      this.#headerNeeded = 2;
      this.#remaining = length;
    }
    return { forward, violation: null, stopped: stopAtBoundary && this.atBoundary };
  }

  /** The first two bytes: how long the header is, and (from a client) whether the frame may pass. */
  #checkStart(): string | null {
    const first = this.#header[0]!;
    const second = this.#header[1]!;
    const masked = (second & 0x80) !== 0;
    const length7 = second & 0x7f;
    this.#headerNeeded = 2 + (length7 === 126 ? 2 : length7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (!this.fromClient) return null;
    const opcode = first & 0x0f;
    // RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    if (!masked) return 'an unmasked client frame';
    if (!KNOWN_OPCODES.has(opcode)) return `reserved opcode ${opcode}`;
    if (opcode >= OPCODE_CLOSE && ((first & 0x80) === 0 || length7 > MAX_CONTROL_PAYLOAD)) return 'a fragmented or long control frame';
    return null;
  }

  #payloadLength(): number | null {
    const length7 = this.#header[1]! & 0x7f;
    if (length7 < 126) return length7;
    if (length7 === 126) return this.#header.readUInt16BE(2);
    const length = this.#header.readBigUInt64BE(2);
    // RFC 6455 §5.2: "the most significant bit MUST be 0"; past 2^53 a number cannot count it exactly.
    return length > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(length);
  }
}

/** A close frame (RFC 6455 §5.5.1) with `code`; `masked` for frames a client (this proxy, upstream) sends. */
export function closeFrame(code: number, masked: boolean): Buffer {
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code, 0);
  if (!masked) return Buffer.concat([Buffer.from([0x80 | OPCODE_CLOSE, payload.length]), payload]);
  const mask = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([Buffer.from([0x80 | OPCODE_CLOSE, 0x80 | payload.length]), mask, payload]);
}
