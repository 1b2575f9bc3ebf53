/**
 * The worker's end of the access log pipe (src/ipc/access-log.ts). Writes
 * never block the event loop: a line waits in the socket's buffer while the
 * master is behind, and past MAX_BUFFERED_BYTES lines are dropped and
 * counted rather than held (the count is logged once a minute).
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { ACCESS_LOG_FD, MAX_ACCESS_LINE_BYTES } from '../../ipc/access-log.js';

const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
const DROP_REPORT_MS = 60_000;

export class AccessLogPipe {
  readonly #socket: net.Socket;
  #dropped = 0;
  #reporter: NodeJS.Timeout;

  constructor(log: Logger) {
    this.#socket = new net.Socket({ fd: ACCESS_LOG_FD, readable: false, writable: true });
    this.#socket.on('error', (error) => log.error({ err: error }, 'access log pipe failed; lines are dropped'));
    this.#reporter = setInterval(() => {
      if (this.#dropped === 0) return;
      log.warn({ dropped: this.#dropped }, 'access log lines dropped: the master did not keep up');
      this.#dropped = 0;
    }, DROP_REPORT_MS);
    this.#reporter.unref();
  }

  write(line: string): void {
    if (this.#socket.destroyed || this.#socket.writableLength > MAX_BUFFERED_BYTES || Buffer.byteLength(line) > MAX_ACCESS_LINE_BYTES) {
      this.#dropped += 1;
      return;
    }
    this.#socket.write(line);
  }

  /** Ends the pipe once what is buffered is written (or after a second: the worker is exiting). */
  close(): Promise<void> {
    clearInterval(this.#reporter);
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 1000);
      this.#socket.end(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
