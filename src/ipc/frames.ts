/**
 * The framing of the channel between master and worker: an AF_UNIX stream
 * socket (a socketpair, the worker's fd 3) carrying frames of
 *
 *     +----------------------------+---------------------------+
 *     | length: uint32, big-endian | payload: `length` bytes   |
 *     +----------------------------+---------------------------+
 *
 * where the payload is one catalogue message (messages.ts) as UTF-8 JSON.
 * As in relayd's imsg, the length is read and checked against the reader's
 * cap before a single payload byte is kept, so a peer can never make the
 * reader buffer more than one capped frame; a header over the cap is a
 * verdict at once, not a wait. Each direction has its own cap: the master
 * reads at most MAX_WORKER_FRAME_BYTES, the worker (which trusts the master)
 * a much larger one, for TLS material and the ban list.
 *
 * Node's own IPC channel ('ipc' in stdio) is not used: its parser runs in
 * the master on whatever the worker writes, buffers a line without limit,
 * throws on non-JSON and obeys internal NODE_HANDLE_* commands.
 */

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** Largest payload the master accepts from a worker (the worker never sends more; see encodeFrame). */
export const MAX_WORKER_FRAME_BYTES = 64 * 1024;
/** Largest payload the master sends (certificates and keys of every domain, the whole ban list). */
export const MAX_MASTER_FRAME_BYTES = 256 * 1024 * 1024;
/**
 * Deepest nesting of arrays and objects in a worker's message. The
 * catalogue's deepest shape is 3 (AUDIT_EVENT's headers, MET_REPORT's
 * tuples); anything deeper is refused before JSON.parse sees it, so no
 * later walk of the value can recurse far.
 */
export const MAX_WORKER_MESSAGE_DEPTH = 4;

/** One message as a frame. Throws when the payload exceeds `maxBytes`: a sender bug, never sent half. */
export function encodeFrame(message: unknown, maxBytes: number): Buffer {
  const payload = Buffer.from(JSON.stringify(message), 'utf8');
  if (payload.length > maxBytes) throw new RangeError(`frame of ${payload.length} bytes exceeds the channel's ${maxBytes}`);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

export type FrameFault =
  /** The header announces more than the reader's cap (or nothing at all). */
  { kind: 'frame.size'; announced: number };

/**
 * Cuts a byte stream into payloads. Holds at most one partial header and one
 * partial payload of at most `maxBytes`; a header outside 1..maxBytes is a
 * fault, after which the reader takes nothing more.
 */
export class FrameReader {
  #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #payload: Buffer | null = null;
  #payloadFill = 0;
  #failed = false;
  /** performance.now() when the frame being read began, or null between frames. */
  partialSince: number | null = null;

  constructor(private readonly maxBytes: number) {}

  /**
   * Feeds `chunk`; calls `onFrame` for each complete payload, in order, and
   * stops at the first fault (returned) or when `onFrame` returns false
   * (the consumer's verdict: the rest of the chunk is dropped unread).
   */
  push(chunk: Buffer, onFrame: (payload: Buffer) => boolean): FrameFault | null {
    if (this.#failed) return null;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#payload === null) {
        if (this.#headerFill === 0) this.partialSince = performance.now();
        const take = Math.min(FRAME_HEADER_BYTES - this.#headerFill, chunk.length - offset);
        chunk.copy(this.#header, this.#headerFill, offset, offset + take);
        this.#headerFill += take;
        offset += take;
        if (this.#headerFill < FRAME_HEADER_BYTES) break;
        const announced = this.#header.readUInt32BE(0);
        if (announced === 0 || announced > this.maxBytes) {
          this.#failed = true;
          return { kind: 'frame.size', announced };
        }
        this.#payload = Buffer.allocUnsafe(announced);
        this.#payloadFill = 0;
      }
      const payload = this.#payload;
      const take = Math.min(payload.length - this.#payloadFill, chunk.length - offset);
      chunk.copy(payload, this.#payloadFill, offset, offset + take);
      this.#payloadFill += take;
      offset += take;
      if (this.#payloadFill < payload.length) break;
      this.#payload = null;
      this.#headerFill = 0;
      this.partialSince = null;
      if (!onFrame(payload)) {
        this.#failed = true;
        return null;
      }
    }
    return null;
  }

  /** Bytes held for the frame being read (bounded by the cap). */
  get bufferedBytes(): number {
    return this.#headerFill + this.#payloadFill;
  }
}

/**
 * Whether the JSON text's arrays and objects nest at most `maxDepth` deep,
 * by a scan of the bytes that tracks strings and their escapes (RFC 8259 §7)
 * and never recurses. Malformed text may pass: JSON.parse judges that.
 */
export function nestingWithin(payload: Buffer, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < payload.length; i++) {
    const byte = payload[i]!;
    if (inString) {
      if (byte === 0x5c)
        i++; // backslash: the next byte is escaped
      else if (byte === 0x22) inString = false;
      continue;
    }
    if (byte === 0x22) inString = true;
    else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > maxDepth) return false;
    } else if (byte === 0x5d || byte === 0x7d) depth--;
  }
  return true;
}
