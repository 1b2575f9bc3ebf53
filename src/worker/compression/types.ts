/**
 * Which responses are worth compressing: types mime-db marks compressible
 * (text, JSON, XML, JavaScript, SVG, WebAssembly, some fonts and models),
 * never an event stream (each event must reach the client when it is sent)
 * nor an unknown file (application/octet-stream),
 * and the encoders each coding is made with. Levels are what Caddy and
 * nginx's brotli module use on the fly: fast, most of the gain.
 */
import { constants, createBrotliCompress, createGzip, createZstdCompress, type ZlibOptions } from 'node:zlib';
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

/** Levels on the fly (proxied and streamed responses) and for files compressed once and held in memory. */
const LEVELS = {
  stream: { br: 4, zstd: 3, gzip: 6 },
  held: { br: 6, zstd: 9, gzip: 6 },
} as const;

export type CompressionUse = keyof typeof LEVELS;

export function createEncoder(coding: ContentCoding, use: CompressionUse, sizeHint?: number): Transform {
  const level = LEVELS[use][coding];
  switch (coding) {
    case 'br': {
      const params: Record<number, number> = {
        [constants.BROTLI_PARAM_QUALITY]: level,
        [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      };
      if (sizeHint !== undefined) params[constants.BROTLI_PARAM_SIZE_HINT] = sizeHint;
      return createBrotliCompress({ params });
    }
    case 'zstd':
      return createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: level } });
    case 'gzip':
      return createGzip({ level } satisfies ZlibOptions);
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
