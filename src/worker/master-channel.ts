/**
 * The worker's end of its channel to the master: the AF_UNIX socket at fd 3
 * the master created and the sandbox helper kept open (src/ipc/frames.ts).
 * The master is trusted, but its frames are still read by their length
 * prefix, against a cap; a frame the worker cannot read ends the worker.
 * When the master's end closes (the master died or is gone), the worker
 * exits: it never serves unsupervised.
 */
import { fstatSync } from 'node:fs';
import net from 'node:net';
import { encodeFrame, FrameReader, MAX_MASTER_FRAME_BYTES, MAX_WORKER_FRAME_BYTES } from '../ipc/frames.js';
import type { MasterMessage, WorkerMessage } from '../ipc/messages.js';

export class MasterChannel {
  readonly #socket: net.Socket;
  readonly #reader = new FrameReader(MAX_MASTER_FRAME_BYTES);

  constructor(
    fd: number,
    onMessage: (message: MasterMessage) => void,
    /** The channel closed, or carried something unreadable: `why`. */
    onEnd: (why: string | null) => void,
  ) {
    this.#socket = new net.Socket({ fd, readable: true, writable: true });
    this.#socket.on('data', (chunk: Buffer) => {
      const fault = this.#reader.push(chunk, (payload) => {
        let message: MasterMessage;
        try {
          message = JSON.parse(payload.toString('utf8')) as MasterMessage;
        } catch {
          onEnd('a frame from the master is not JSON');
          return false;
        }
        onMessage(message);
        return true;
      });
      if (fault !== null) onEnd(`a frame from the master announces ${fault.announced} bytes`);
    });
    this.#socket.on('end', () => onEnd(null));
    this.#socket.on('error', () => onEnd(null));
  }

  /** Whether fd `fd` is a socket: the worker was started by the master, with its channel. */
  static present(fd: number): boolean {
    try {
      return fstatSync(fd).isSocket();
    } catch {
      return false;
    }
  }

  /** Queues `message`; false (nothing sent) when it would exceed the master's frame cap. */
  send(message: WorkerMessage): boolean {
    let frame: Buffer;
    try {
      frame = encodeFrame(message, MAX_WORKER_FRAME_BYTES);
    } catch {
      return false;
    }
    this.#socket.write(frame);
    return true;
  }

  /** No more messages: the master sees the end of the stream. */
  end(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(resolve));
  }
}
