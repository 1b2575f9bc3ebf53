/**
 * One version of one file as the static handler answers it: its identity
 * (to notice a change), its body when small enough to hold, its validators,
 * and the response headers computed once. Pure: the file's stats are given.
 */
import type { Stats } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import { contentTypeFor } from '../mime.js';
import type { ContentCoding } from '../../../config/types.js';
import type { Validators } from './conditional.js';

/** What of a file's stats tells one version from another. */
export type FileStats = Pick<Stats, 'ino' | 'size' | 'mtimeMs' | 'ctimeMs'>;

/**
 * What one response sends: a file as it is (a FileEntry is its own identity
 * representation), or an encoded form of it (../../compression/static.ts).
 */
export interface Representation extends Validators {
  /** Bytes of the representation, when known (not when encoded while streaming). */
  readonly size: number;
  /** Held in memory, or null: stream `source`. */
  readonly body: Buffer | null;
  readonly headers200: OutgoingHttpHeaders;
  readonly headers304: OutgoingHttpHeaders;
  /** Content-Encoding, or null for the bytes as stored. */
  readonly coding: ContentCoding | null;
  /** The file the bytes are read from: the file itself, or its precompressed sibling. */
  readonly source: FileEntry;
  /** `source` is compressed (with `coding`) as it streams. */
  readonly encodeWhileStreaming: boolean;
  /** The answer depends on Accept-Encoding: partial answers say so too. */
  readonly vary: boolean;
}

/** One version of one file, with everything a response needs computed once. */
export interface FileEntry extends Representation {
  readonly realPath: string;
  readonly ino: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly size: number;
  /** The whole file, or null when it is too large to cache and is streamed. */
  readonly body: Buffer | null;
  readonly contentType: string;
  readonly headers200: OutgoingHttpHeaders;
  readonly headers304: OutgoingHttpHeaders;
}

/** The entry for `stats` (and `body`, when held in memory) of the file at `realPath`. */
export function makeEntry(realPath: string, stats: FileStats, body: Buffer | null, contentType = contentTypeFor(realPath)): FileEntry {
  const size = body !== null ? body.length : stats.size;
  const mtimeMs = stats.mtimeMs;
  const lastModifiedSec = Math.floor(mtimeMs / 1000);
  // Weak (RFC 9110 §8.8.1): size and mtime say the content is probably the
  // same, not that it is byte-for-byte identical.
  const etag = `W/"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
  const lastModified = new Date(lastModifiedSec * 1000).toUTCString();
  const entry: FileEntry = {
    realPath,
    coding: null,
    encodeWhileStreaming: false,
    vary: false,
    get source(): FileEntry {
      return entry;
    },
    ino: stats.ino,
    mtimeMs,
    ctimeMs: stats.ctimeMs,
    size,
    body,
    contentType,
    etag,
    lastModified,
    lastModifiedSec,
    headers200: Object.freeze({
      'Content-Type': contentType,
      'Content-Length': String(size),
      ETag: etag,
      'Last-Modified': lastModified,
      'Accept-Ranges': 'bytes',
    }),
    // RFC 9110 §15.4.5: a 304 repeats the validator, not the representation.
    headers304: Object.freeze({ ETag: etag }),
  };
  return entry;
}

/** Whether `stats` still describe the version `entry` was made from. */
export function sameVersion(entry: FileEntry, realPath: string, stats: FileStats): boolean {
  return (
    entry.realPath === realPath &&
    entry.ino === stats.ino &&
    entry.size === stats.size &&
    entry.mtimeMs === stats.mtimeMs &&
    entry.ctimeMs === stats.ctimeMs
  );
}

/** The headers of a 206 with bytes `start`..`end` (inclusive) of `entry`. */
export function partialHeaders(entry: FileEntry, start: number, end: number, vary = false): OutgoingHttpHeaders {
  return {
    ...(vary && { Vary: 'Accept-Encoding' }),
    'Content-Type': entry.contentType,
    'Content-Length': String(end - start + 1),
    'Content-Range': `bytes ${start}-${end}/${entry.size}`,
    ETag: entry.etag,
    'Last-Modified': entry.lastModified,
    'Accept-Ranges': 'bytes',
  };
}
