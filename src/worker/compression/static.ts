/**
 * Compression of static files, per site: which representation of a file a
 * request gets. A small file (held in memory) is compressed once per coding
 * in the thread pool and kept beside its entry as long as the entry lives;
 * a large one is compressed as it streams; with `precompressed`, a fresh
 * file.br / file.zst / file.gz beside it is served instead (lookup.ts finds
 * them). The client's Accept-Encoding decides (negotiate.ts).
 *
 * A request with a Range gets the file as stored: byte ranges of an encoded
 * form are never sent (no Content-Range on an encoded answer). Every answer
 * of a file whose answer depends on Accept-Encoding says `Vary:
 * Accept-Encoding`, identity and 304 answers included, and each encoded form
 * has its own ETag (the file's with the coding's suffix).
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip, zstdCompress } from 'node:zlib';
import type { CompressionSpec, ContentCoding } from '../../config/types.js';
import type { FileEntry, Representation } from '../handlers/static/entry.js';
import { chooseCoding } from './negotiate.js';
import { encodedEtag, isCompressible } from './types.js';

/** Precompressed siblings of a file that were found fresh, by coding. */
export type Siblings = Readonly<Partial<Record<ContentCoding, FileEntry>>>;

const compressBuffer: Record<ContentCoding, (body: Buffer) => Promise<Buffer>> = {
  br: (body) =>
    promisify(brotliCompress)(body, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: 6,
        [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
        [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
      },
    }),
  zstd: (body) => promisify(zstdCompress)(body, { params: { [constants.ZSTD_c_compressionLevel]: 9 } }),
  gzip: (body) => promisify(gzip)(body, { level: 6 }),
};

interface Forms {
  /** The file as stored, with Vary. */
  readonly identity: Representation;
  /** Compressed bodies: settled ones, or the compression under way (null: not smaller, send identity). */
  readonly held: Map<ContentCoding, Representation | null | Promise<Representation | null>>;
}

const freeze = (headers: OutgoingHttpHeaders): OutgoingHttpHeaders => Object.freeze(headers);

function identityWithVary(entry: FileEntry): Representation {
  return {
    ...validators(entry),
    size: entry.size,
    body: entry.body,
    headers200: freeze({ ...entry.headers200, Vary: 'Accept-Encoding' }),
    headers304: freeze({ ...entry.headers304, Vary: 'Accept-Encoding' }),
    coding: null,
    source: entry,
    encodeWhileStreaming: false,
    vary: true,
  };
}

function validators(entry: FileEntry, coding: ContentCoding | null = null) {
  return {
    etag: coding === null ? entry.etag : encodedEtag(entry.etag, coding),
    lastModified: entry.lastModified,
    lastModifiedSec: entry.lastModifiedSec,
  };
}

/** An encoded form of `entry` (whose type the headers keep), read from `source`, with `body` when held. */
function encodedForm(
  entry: FileEntry,
  coding: ContentCoding,
  source: FileEntry,
  body: Buffer | null,
  encodeWhileStreaming: boolean,
): Representation {
  const own = validators(source === entry ? entry : source, coding);
  const headers: OutgoingHttpHeaders = {
    'Content-Type': entry.contentType,
    'Content-Encoding': coding,
    ETag: own.etag,
    'Last-Modified': own.lastModified,
    Vary: 'Accept-Encoding',
  };
  const size = body?.length ?? (encodeWhileStreaming ? -1 : source.size);
  if (size >= 0) headers['Content-Length'] = String(size);
  return {
    ...own,
    size,
    body,
    headers200: freeze(headers),
    headers304: freeze({ ETag: own.etag, Vary: 'Accept-Encoding' }),
    coding,
    source,
    encodeWhileStreaming,
    vary: true,
  };
}

/** A precompressed sibling (made with its file's type) as the answer for `coding`: after it changed under a cached lookup. */
export function siblingForm(sibling: FileEntry, coding: ContentCoding): Representation {
  return encodedForm(sibling, coding, sibling, sibling.body, false);
}

export class StaticCompression {
  readonly #forms = new WeakMap<FileEntry, Forms>();

  constructor(private readonly policy: CompressionSpec) {}

  /** Whether the site ever looks for precompressed siblings. */
  get precompressed(): boolean {
    return this.policy.precompressed;
  }

  /**
   * What to send for `entry`: null when its answer never depends on
   * Accept-Encoding (send the entry itself), else a representation, or the
   * promise of one while its compressed body is being made.
   */
  select(
    entry: FileEntry,
    siblings: Siblings | null,
    acceptEncoding: string | undefined,
    ranged: boolean,
  ): Representation | Promise<Representation> | null {
    const { policy } = this;
    const onTheFly = policy.enabled && isCompressible(entry.contentType) && entry.size >= policy.minLengthBytes;
    if (!onTheFly && (siblings === null || Object.keys(siblings).length === 0)) return null;
    const available = onTheFly ? policy.algorithms : policy.algorithms.filter((coding) => siblings?.[coding] !== undefined);
    if (available.length === 0) return null;
    const forms = this.#formsOf(entry);
    if (ranged) return forms.identity;
    const coding = chooseCoding(acceptEncoding, available);
    if (coding === null) return forms.identity;
    const sibling = siblings?.[coding];
    if (sibling !== undefined) return encodedForm(entry, coding, sibling, sibling.body, false);
    if (entry.body === null) return encodedForm(entry, coding, entry, null, true);
    const held = forms.held.get(coding);
    if (held === undefined) {
      const making = compressBuffer[coding](entry.body).then(
        (body) => {
          const form = body.length < entry.size ? encodedForm(entry, coding, entry, body, false) : null;
          forms.held.set(coding, form);
          return form ?? forms.identity;
        },
        () => {
          forms.held.set(coding, null);
          return forms.identity;
        },
      );
      forms.held.set(coding, making);
      return making;
    }
    if (held === null) return forms.identity;
    if (held instanceof Promise) return held.then((form) => form ?? forms.identity);
    return held;
  }

  #formsOf(entry: FileEntry): Forms {
    let forms = this.#forms.get(entry);
    if (forms === undefined) {
      forms = { identity: identityWithVary(entry), held: new Map() };
      this.#forms.set(entry, forms);
    }
    return forms;
  }
}
