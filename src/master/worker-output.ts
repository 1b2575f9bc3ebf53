/**
 * A worker's stdout and stderr, as lines for the master's log. The worker
 * is untrusted here too: a line is cut at MAX_LINE_BYTES whether or not its
 * newline ever comes (readline would buffer it without limit), and a JSON
 * line gets the worker's identity appended as its last keys, which win over
 * any the worker wrote (JSON.parse and jq keep the last of duplicate keys),
 * so a worker cannot write lines that read as the master's.
 */
import type { Readable } from 'node:stream';
import { MAX_WORKER_MESSAGE_DEPTH, nestingWithin } from '../ipc/frames.js';

/** The longest line kept from a worker's output; the rest of it is dropped. */
export const MAX_LINE_BYTES = 16 * 1024;

/** Calls `onLine` with each line of `stream` (without its newline), at most MAX_LINE_BYTES, the cut ones marked `truncated`. */
export function readBoundedLines(stream: Readable, onLine: (line: string, truncated: boolean) => void): void {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let skipping = false;
  stream.on('data', (chunk: Buffer) => {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline === -1 ? chunk.length : newline;
      if (!skipping) {
        const room = MAX_LINE_BYTES - heldBytes;
        const piece = chunk.subarray(start, Math.min(end, start + room));
        held.push(piece);
        heldBytes += piece.length;
        if (end - start > room) {
          onLine(Buffer.concat(held).toString('utf8'), true);
          held = [];
          heldBytes = 0;
          skipping = true;
        }
      }
      if (newline === -1) break;
      if (!skipping) onLine(Buffer.concat(held).toString('utf8'), false);
      held = [];
      heldBytes = 0;
      skipping = false;
      start = newline + 1;
    }
  });
}

/**
 * The line as the master logs it: a worker's JSON object with `identity`
 * appended last, or null when the line is not a JSON object (the caller
 * wraps it as text).
 */
export function withIdentity(line: string, identity: Readonly<Record<string, number | string>>): string | null {
  if (!line.startsWith('{') || !line.endsWith('}')) return null;
  if (!nestingWithin(Buffer.from(line), MAX_WORKER_MESSAGE_DEPTH * 4)) return null;
  try {
    const value: unknown = JSON.parse(line);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
    const empty = Object.keys(value).length === 0;
    const suffix = Object.entries(identity)
      .map(([key, field]) => `${JSON.stringify(key)}:${JSON.stringify(field)}`)
      .join(',');
    return `${line.slice(0, -1)}${empty ? '' : ','}${suffix}}`;
  } catch {
    return null;
  }
}
