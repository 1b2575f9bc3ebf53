/**
 * The master's end of one worker's channel (src/ipc/frames.ts): the peer is
 * untrusted. Frames are capped before they are read, decoded by a function
 * that cannot throw, and handed on one at a time; the first fault is the
 * verdict, after which nothing more is read, decoded or honoured — neither
 * the rest of the chunk in hand nor anything that arrives later.
 *
 * Both directions are bounded. Inbound: one partial frame at most, and the
 * socket is paused (nothing more read, so no more replies made) while the
 * replies already queued for this worker pass OUTBOUND_PAUSE_BYTES: a worker
 * that asks without reading its answers stops being heard, and is then
 * caught by the liveness check. Outbound, once the worker is ready: a queue
 * over OUTBOUND_LIMIT_BYTES (broadcasts to a worker that stopped reading)
 * is a verdict too.
 */
import type { Socket } from 'node:net';
import { encodeFrame, FrameReader, MAX_MASTER_FRAME_BYTES, MAX_WORKER_FRAME_BYTES } from '../ipc/frames.js';
import { decodeWorkerMessage, isFault, type MasterMessage, type WorkerMessage } from '../ipc/messages.js';

/** Replies queued for one worker past which the master stops reading its requests. */
const OUTBOUND_PAUSE_BYTES = 1024 * 1024;
/** Bytes queued for a ready worker past which it is taken not to read its channel. */
const OUTBOUND_LIMIT_BYTES = 32 * 1024 * 1024;

export interface ChannelFault {
  readonly rule: string;
  readonly detail: string;
}

export class WorkerChannel {
  readonly #socket: Socket;
  readonly #reader = new FrameReader(MAX_WORKER_FRAME_BYTES);
  #closed = false;
  #paused = false;
  /** Set once the worker is ready: from then on an unread queue is a fault. */
  limitOutbound = false;

  constructor(
    socket: Socket,
    /** Each message, in order; the channel stops at once if the handler closed it. */
    private readonly onMessage: (message: WorkerMessage) => void,
    /** The first fault; called once, after the channel has closed. */
    private readonly onFault: (fault: ChannelFault) => void,
  ) {
    this.#socket = socket;
    // A worker that died mid-write, or a write after it closed its end: its exit is what counts.
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * When the frame being read began (performance.now()), or null between
   * frames or while the master itself is not reading (its answers to this
   * worker are queued): a frame that never ends is a fault too.
   */
  get partialFrameSince(): number | null {
    return this.#paused ? null : this.#reader.partialSince;
  }

  /** Queue a message; `onFlushed` runs once the kernel has it (the worker can read it). Dropped after close. */
  send(message: MasterMessage, onFlushed?: () => void): void {
    if (this.#closed) return;
    const queuedBefore = this.#socket.writableLength;
    if (this.limitOutbound && queuedBefore > OUTBOUND_LIMIT_BYTES) {
      this.#fault({ rule: 'channel.unread', detail: `${queuedBefore} bytes queued and not read` });
      return;
    }
    const frame = encodeFrame(message, MAX_MASTER_FRAME_BYTES);
    this.#socket.write(frame, onFlushed === undefined ? undefined : (error) => error == null && !this.#closed && onFlushed());
    if (!this.#paused && this.#socket.writableLength > OUTBOUND_PAUSE_BYTES) {
      this.#paused = true;
      this.#socket.pause();
      this.#socket.once('drain', () => {
        this.#paused = false;
        if (!this.#closed) this.#socket.resume();
      });
    }
  }

  /** Nothing more is read or sent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.removeAllListeners('data');
    this.#socket.destroy();
  }

  #receive(chunk: Buffer): void {
    if (this.#closed) return;
    const fault = this.#reader.push(chunk, (payload) => {
      if (this.#closed) return false;
      const decoded = decodeWorkerMessage(payload);
      if (isFault(decoded)) {
        this.#fault(decoded);
        return false;
      }
      this.onMessage(decoded);
      return !this.#closed;
    });
    if (fault !== null)
      this.#fault({ rule: fault.kind, detail: `frame header announces ${fault.announced} bytes (at most ${MAX_WORKER_FRAME_BYTES})` });
  }

  #fault(fault: ChannelFault): void {
    if (this.#closed) return;
    this.close();
    this.onFault(fault);
  }
}
