/**
 * A file's bytes as a response body, read into two buffers that are used
 * again once the response has taken each (its write callback): at most two
 * chunks of a response are in memory, and streaming allocates nothing per
 * read. A read stream piped to the response allocates a buffer per read,
 * which only V8's collector frees: a worker streaming a 100 MB file to four
 * clients that way grew ~80 MB (docs/serving.md, "Large files").
 *
 * The descriptor is closed once the last byte is read, when the response
 * closes first (the client went), or on a read error. A read error, or a
 * file that ends before the length its head announced, destroys the
 * response: the client never takes a truncated body for a whole one.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

/**
 * Closes a descriptor no one waits on (FileHandle.close() waits for a read
 * in flight). A failure to close has no one to tell, and must not become an
 * unhandled rejection that takes the worker down.
 */
export function closeQuietly(handle: FileHandle): void {
  handle.close().catch(() => undefined);
}

/** Chunks a response may hold at once: one being sent while the next is read. */
const BUFFERS = 2;

/**
 * Sends bytes `start` to `end` (inclusive) of `handle` through `res`, in
 * reads of at most `chunkBytes`, and ends the response. `done` is called
 * once: with null when every byte was handed over or the response closed
 * first, with the error that cut it short otherwise.
 */
export function sendFileRange(
  handle: FileHandle,
  res: ServerResponse,
  start: number,
  end: number,
  chunkBytes: number,
  done: (error: NodeJS.ErrnoException | null) => void,
): void {
  const free: Buffer[] = [];
  const size = Math.min(chunkBytes, end - start + 1);
  let made = 0;
  let position = start;
  let reading = false;
  let finished = false;

  const finish = (error: NodeJS.ErrnoException | null): void => {
    if (finished) return;
    finished = true;
    closeQuietly(handle);
    done(error);
  };
  const fail = (error: NodeJS.ErrnoException): void => {
    if (finished) return;
    res.destroy(error);
    finish(error);
  };
  res.once('close', () => finish(null));

  const pump = (): void => {
    if (reading || finished) return;
    let buffer = free.pop();
    if (buffer === undefined) {
      // Both buffers are the response's: its next write callback pumps again.
      if (made === BUFFERS) return;
      made += 1;
      buffer = Buffer.allocUnsafeSlow(size);
    }
    const chunk = buffer;
    reading = true;
    handle.read(chunk, 0, Math.min(chunk.length, end - position + 1), position).then(({ bytesRead }) => {
      reading = false;
      if (finished) return;
      if (bytesRead === 0) {
        fail(Object.assign(new Error(`the file ended ${end - position + 1} bytes early`), { code: 'ESHORTFILE' }));
        return;
      }
      position += bytesRead;
      const last = position > end;
      res.write(bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead), (error?: Error | null) => {
        if (error) return;
        free.push(chunk);
        pump();
      });
      if (!last) {
        pump();
        return;
      }
      res.end();
      finish(null);
    }, fail);
  };
  pump();
}
