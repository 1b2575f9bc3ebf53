/**
 * Which responses are worth compressing: types mime-db marks compressible
 * (text, JSON, XML, JavaScript, SVG, WebAssembly, some fonts and models),
 * never an event stream (each event must reach the client when it is sent)
 * nor an unknown file (application/octet-stream),
 * and the encoders each coding is made with. Levels are what Caddy and
 * nginx's brotli module use on the fly: fast, most of the gain.
 */
import {
  type BrotliOptions,
  brotliCompressSync,
  constants,
  createBrotliCompress,
  createGzip,
  createZstdCompress,
  gzipSync,
  type ZlibOptions,
  type ZstdOptions,
  zstdCompressSync,
} from 'node:zlib';
import mimeDb from 'mime-db';
import type { ContentCoding } from '../../config/types.js';
import type { Transform } from 'node:stream';

const COMPRESSIBLE: ReadonlySet<string> = new Set(
  Object.entries(mimeDb)
    .filter(([, entry]) => entry.compressible === true)
    .map(([type]) => type),
);

const known = new Map<string, boolean>();

/** Whether a Content-Type (parameters allowed) names a type worth compressing. */
export function isCompressible(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const cached = known.get(contentType);
  if (cached !== undefined) return cached;
  const type = (contentType.split(';', 1)[0] ?? '').trim().toLowerCase();
  const answer =
    type !== 'text/event-stream' &&
    // mime-db calls it compressible; served here it is an unknown extension, as often an archive as not.
    type !== 'application/octet-stream' &&
    (COMPRESSIBLE.has(type) || type.startsWith('text/') || type.endsWith('+json') || type.endsWith('+xml'));
  if (known.size < 1024) known.set(contentType, answer);
  return answer;
}

/** Content-Encoding's name of each coding, and the suffix its ETag and precompressed sibling get. */
export const SUFFIX: Readonly<Record<ContentCoding, string>> = { br: 'br', zstd: 'zst', gzip: 'gz' };

/**
 * Levels on the fly (proxied and streamed responses) and for files
 * compressed once and held in memory. On the fly every response pays: for a
 * 16 KiB page brotli 4 costs ~260 us and 3 ~140 us for 3 % more bytes,
 * gzip 6 ~230 us and 5 ~190 us for 0.5 % more (docs/benchmark.md,
 * Compression).
 */
const LEVELS = {
  stream: { br: 3, zstd: 3, gzip: 5 },
  held: { br: 6, zstd: 9, gzip: 6 },
} as const;

/**
 * The window on the fly, as a power of two: 256 KiB instead of brotli's
 * 4 MiB and zstd's 2 MiB at these levels. Each response being compressed
 * holds one, so fifty at once stay within a few tens of MB (at the defaults
 * a worker grew to 300 MB under 50 connections); a page gains little from a
 * window larger than itself.
 */
const STREAM_WINDOW_LOG = 18;

export type CompressionUse = keyof typeof LEVELS;

/** Each coding's zlib options for a use (the window on the fly, the size when known). */
function optionsFor(coding: ContentCoding, use: CompressionUse, sizeHint?: number): ZlibOptions | BrotliOptions | ZstdOptions {
  const level = LEVELS[use][coding];
  switch (coding) {
    case 'br': {
      const params: Record<number, number> = {
        [constants.BROTLI_PARAM_QUALITY]: level,
        [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      };
      if (sizeHint !== undefined) params[constants.BROTLI_PARAM_SIZE_HINT] = sizeHint;
      if (use === 'stream') params[constants.BROTLI_PARAM_LGWIN] = STREAM_WINDOW_LOG;
      return { params };
    }
    case 'zstd': {
      const params: Record<number, number> = { [constants.ZSTD_c_compressionLevel]: level };
      if (use === 'stream') params[constants.ZSTD_c_windowLog] = STREAM_WINDOW_LOG;
      return { params };
    }
    case 'gzip':
      return { level };
  }
}

export function createEncoder(coding: ContentCoding, use: CompressionUse, sizeHint?: number): Transform {
  const options = optionsFor(coding, use, sizeHint);
  switch (coding) {
    case 'br':
      return createBrotliCompress(options as BrotliOptions);
    case 'zstd':
      return createZstdCompress(options as ZstdOptions);
    case 'gzip':
      return createGzip(options as ZlibOptions);
  }
}

/**
 * A whole body compressed at once, on the event loop, at the on-the-fly
 * levels: for a small body this costs about half of the streaming encoder,
 * whose every step is a round trip through the thread pool (brotli 3 on a
 * 16 KiB page: ~75 us against ~160 us).
 */
export function compressWhole(coding: ContentCoding, body: Buffer): Buffer {
  const options = optionsFor(coding, 'stream', body.length);
  switch (coding) {
    case 'br':
      return brotliCompressSync(body, options as BrotliOptions);
    case 'zstd':
      return zstdCompressSync(body, options as ZstdOptions);
    case 'gzip':
      return gzipSync(body, options as ZlibOptions);
  }
}

/** The flush that hands the client what was written so far without ending the stream. */
export function flushKind(coding: ContentCoding): number {
  switch (coding) {
    case 'br':
      return constants.BROTLI_OPERATION_FLUSH;
    case 'zstd':
      return constants.ZSTD_e_flush;
    case 'gzip':
      return constants.Z_SYNC_FLUSH;
  }
}

/** `W/"x"` or `"x"` with the coding's suffix inside the quotes, always weak (the bytes depend on the encoder's version). */
export function encodedEtag(etag: string, coding: ContentCoding): string {
  const opaque = etag.startsWith('W/') ? etag.slice(2) : etag;
  if (opaque.length < 2 || !opaque.endsWith('"')) return etag;
  return `W/${opaque.slice(0, -1)}-${SUFFIX[coding]}"`;
}
