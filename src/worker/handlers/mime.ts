/**
 * The MIME table for static files: mime-db (the table the npm ecosystem's
 * mime-types and Express use, from IANA, Apache and nginx), built once per
 * worker. A worker never reads /etc/mime.types (it may be chrooted, and the
 * answer must not depend on the host); anything unknown is served as an
 * opaque download.
 *
 * Where several types claim one extension, IANA's wins over Apache's over
 * nginx's, and on a tie a non-"application/" type (mime-types' rule). A few
 * extensions are pinned where the web's practice is settled and mime-db
 * differs or is silent.
 */
import mimeDb from 'mime-db';

/** What an unknown extension is served as (RFC 2046 §4.5.1). */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const UTF8 = '; charset=utf-8';

const SOURCE_RANK: Readonly<Record<string, number>> = { nginx: 0, apache: 1, iana: 3 };
const rank = (source: string | undefined): number => (source === undefined ? 2 : (SOURCE_RANK[source] ?? 2));

const PINNED: Readonly<Record<string, string>> = {
  js: 'text/javascript', // RFC 9239 §6: text/javascript is the one to use
  mjs: 'text/javascript',
  cjs: 'text/javascript',
  map: 'application/json', // source maps
  md: 'text/markdown',
  ico: 'image/vnd.microsoft.icon',
  wav: 'audio/wav',
  mp4: 'video/mp4',
  m4a: 'audio/mp4',
  opus: 'audio/ogg',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  toml: 'application/toml',
  xml: 'application/xml', // RFC 7303 §9.2: text/xml is only an alias
  tgz: 'application/gzip',
  zst: 'application/zstd',
  flac: 'audio/flac',
  m4v: 'video/mp4',
  deb: 'application/vnd.debian.binary-package',
  rpm: 'application/x-rpm',
  exe: 'application/octet-stream',
  dmg: 'application/octet-stream',
  iso: 'application/octet-stream',
};

/**
 * Types whose bodies are text: they get an explicit charset so browsers do
 * not guess one (a guessed UTF-7 was a classic XSS vector).
 */
function isText(type: string): boolean {
  return (
    type.startsWith('text/') ||
    type.endsWith('+json') ||
    type.endsWith('+xml') ||
    type === 'application/json' ||
    type === 'application/xml' ||
    type === 'application/javascript' ||
    type === 'application/yaml' ||
    type === 'application/toml' ||
    mimeDb[type]?.charset === 'UTF-8'
  );
}

function buildTable(): ReadonlyMap<string, string> {
  const chosen = new Map<string, string>();
  for (const [type, entry] of Object.entries(mimeDb)) {
    for (const extension of entry.extensions ?? []) {
      const current = chosen.get(extension);
      if (current !== undefined) {
        const from = rank(mimeDb[current]?.source);
        const to = rank(entry.source);
        if (from > to || (from === to && !current.startsWith('application/'))) continue;
      }
      chosen.set(extension, type);
    }
  }
  for (const [extension, type] of Object.entries(PINNED)) chosen.set(extension, type);
  const table = new Map<string, string>();
  for (const [extension, type] of chosen) table.set(extension, isText(type) ? type + UTF8 : type);
  return table;
}

const CONTENT_TYPES = buildTable();

/**
 * The Content-Type for a file name, from its last extension, compared
 * case-insensitively. Text types carry `; charset=utf-8`.
 */
export function contentTypeFor(fileName: string): string {
  const slash = fileName.lastIndexOf('/');
  const dot = fileName.lastIndexOf('.');
  // A leading dot (".profile") is a hidden name, not an extension.
  if (dot <= slash + 1) return DEFAULT_CONTENT_TYPE;
  return CONTENT_TYPES.get(fileName.slice(dot + 1).toLowerCase()) ?? DEFAULT_CONTENT_TYPE;
}
