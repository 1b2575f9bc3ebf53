/**
 * The access log file ([server].access_log_file): created by the master
 * (0640, its directory 0750), written by the master alone, reopened on
 * SIGUSR1 (logrotate's postrotate), switched on reload when the path
 * changes.
 *
 * Each worker writes its lines into a pipe of its own (src/ipc/access-log.ts);
 * the master copies whole lines into the file and parses nothing of them:
 * bytes are split at "\n", each worker's partial line is held apart (so two
 * workers' lines never interleave), and a line longer than
 * MAX_ACCESS_LINE_BYTES is dropped whole. A compromised worker can still
 * write lines that never happened, as it can lie about any request it
 * serves; it cannot break another worker's lines or grow the master's
 * memory past one line. When the disk is slower than the workers, sonic-boom
 * drops what would grow its buffer past MAX_BUFFER_BYTES, and the master
 * says so in its log.
 */
import { fchmodSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { pino } from 'pino';
import { MAX_ACCESS_LINE_BYTES } from '../ipc/access-log.js';
import { ensureParentDirectory } from '../logging/logger.js';

const MAX_BUFFER_BYTES = 16 * 1024 * 1024;
const NEWLINE = 0x0a;

type Destination = ReturnType<typeof pino.destination>;

export class AccessLogFile {
  #file: string | null = null;
  #destination: Destination | null = null;
  #failed = false;
  #dropped = 0;

  constructor(private readonly log: Logger) {}

  /** Write to `file` from now on (null: no access log file); the old one is flushed and closed. */
  use(file: string | null): void {
    if (file === this.#file) return;
    const old = this.#destination;
    this.#file = file;
    this.#destination = null;
    if (old !== null) old.end();
    if (file === null) return;
    try {
      ensureParentDirectory(file);
    } catch (error) {
      this.#report(error as NodeJS.ErrnoException);
    }
    const destination = pino.destination({ dest: file, sync: false, mkdir: false, mode: 0o640, maxLength: MAX_BUFFER_BYTES });
    destination.on('error', (error: NodeJS.ErrnoException) => this.#report(error));
    destination.on('ready', () => {
      this.#failed = false;
      // Opened in the thread pool: a umask the master narrows for a moment
      // (its control socket) could apply to it. The mode is set, not hoped for.
      try {
        fchmodSync((destination as unknown as { fd: number }).fd, 0o640);
      } catch (error) {
        this.#report(error as NodeJS.ErrnoException);
      }
    });
    destination.on('drop', () => (this.#dropped += 1));
    this.#destination = destination;
  }

  /** Copy the complete lines `stream` (one worker's pipe) carries, until it ends. */
  attach(stream: Readable, worker: { readonly pid: number | undefined }): void {
    let partial: Buffer[] = [];
    let partialBytes = 0;
    let skipping = false;
    stream.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let at = chunk.indexOf(NEWLINE); at !== -1; at = chunk.indexOf(NEWLINE, start)) {
        const piece = chunk.subarray(start, at + 1);
        start = at + 1;
        if (skipping || partialBytes + piece.length > MAX_ACCESS_LINE_BYTES) {
          this.#overlong(worker);
          skipping = false;
          partial = [];
          partialBytes = 0;
          continue;
        }
        this.#write(partialBytes === 0 ? piece : Buffer.concat([...partial, piece]));
        partial = [];
        partialBytes = 0;
      }
      if (start < chunk.length && !skipping) {
        const rest = chunk.subarray(start);
        if (partialBytes + rest.length > MAX_ACCESS_LINE_BYTES) {
          skipping = true;
          partial = [];
          partialBytes = 0;
        } else {
          // Copied: the chunk's memory is not pinned by a line that waits for its end.
          partial.push(Buffer.from(rest));
          partialBytes += rest.length;
        }
      }
    });
    stream.on('error', () => undefined);
  }

  reopen(): void {
    if (this.#destination === null || this.#file === null) return;
    try {
      ensureParentDirectory(this.#file);
      this.#destination.reopen();
    } catch (error) {
      this.#report(error as NodeJS.ErrnoException);
    }
  }

  flush(): void {
    try {
      this.#destination?.flushSync();
    } catch {
      // Unwritable: already reported.
    }
    if (this.#dropped > 0) {
      this.log.warn({ file: this.#file, dropped: this.#dropped }, 'access log lines dropped: the disk did not keep up');
      this.#dropped = 0;
    }
  }

  #write(line: Buffer): void {
    if (this.#destination === null || this.#failed) return;
    this.#destination.write(line.toString('utf8'));
  }

  #overlong(worker: { readonly pid: number | undefined }): void {
    this.log.warn({ workerPid: worker.pid, maxBytes: MAX_ACCESS_LINE_BYTES }, 'access log line from a worker too long; dropped');
  }

  #report(error: NodeJS.ErrnoException): void {
    if (!this.#failed) {
      this.log.error({ file: this.#file, code: error.code }, 'access log cannot be written; serving goes on (fix it, then send SIGUSR1)');
    }
    this.#failed = true;
  }
}
