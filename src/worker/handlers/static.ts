/**
 * The static file handler: maps a request path onto a file below the vhost
 * root, refusing anything that could reach outside it, and serves it with
 * validators (ETag, Last-Modified), conditional requests and single byte
 * ranges (RFC 9110 §8.8, §13, §14).
 *
 * Small files are answered from memory: a lookup is trusted for
 * `revalidateAfterMs` (like nginx's open_file_cache_valid), then the file
 * system is asked again, so a changed file shows up within about a second.
 */
import { constants as fsConstants } from 'node:fs';
import type { Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import * as path from 'node:path';
import { pipeline } from 'node:stream';
import type { VhostSpec } from '../../config/types.js';
import { ERRORS, sendError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { contentTypeFor } from './mime.js';
import type { RequestContext, RequestHandler } from './types.js';

/** Cache bounds and freshness. Every unit is in the name. */
export interface StaticCacheTuning {
  /** Files up to this size are held whole in memory; larger ones stream from disk. */
  readonly maxCachedFileBytes: number;
  /** Upper bound on all cached bodies (plus a per-entry overhead estimate). */
  readonly maxCacheBytes: number;
  /** Upper bound on cached positive lookups (files, directory redirects). */
  readonly maxCachedRoutes: number;
  /** Upper bound on cached 404/403 lookups, kept apart so a scan cannot evict hot files. */
  readonly maxNegativeEntries: number;
  /** How long a lookup is trusted before the file system is asked again. */
  readonly revalidateAfterMs: number;
}

export const STATIC_CACHE_DEFAULTS: StaticCacheTuning = Object.freeze({
  maxCachedFileBytes: 256 * 1024,
  maxCacheBytes: 64 * 1024 * 1024,
  maxCachedRoutes: 16_384,
  maxNegativeEntries: 4_096,
  revalidateAfterMs: 1_000,
});

// What a cached entry costs besides its body: key, header objects, strings.
const ENTRY_OVERHEAD_BYTES = 512;
const STREAM_CHUNK_BYTES = 64 * 1024;

// O_NOFOLLOW: the last component was resolved by realpath; if it has become
// a symlink since, refuse (ELOOP) rather than follow it.
// O_NONBLOCK: opening a FIFO swapped in after the stat must not hang a
// libuv thread waiting for a writer; it has no effect on regular files.
const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0);

// RFC 9110 §15.5.6: a 405 must say which methods are supported.
const ALLOW_HEADERS: OutgoingHttpHeaders = Object.freeze({ Allow: 'GET, HEAD' });

// One version of one file, with everything a response needs computed once.
interface FileEntry {
  readonly realPath: string;
  readonly ino: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly size: number;
  // The whole file, or null when it is too large to cache and is streamed.
  readonly body: Buffer | null;
  readonly contentType: string;
  readonly etag: string;
  readonly lastModified: string;
  // Last-Modified in whole seconds, the resolution HTTP-date comparisons work at.
  readonly lastModifiedSec: number;
  readonly headers200: OutgoingHttpHeaders;
  readonly headers304: OutgoingHttpHeaders;
}

interface FileRoute {
  readonly kind: 'file';
  readonly entry: FileEntry;
  readonly checkedAtMs: number;
}

interface RedirectRoute {
  readonly kind: 'redirect';
  // The slash form of the path; the request's query is appended per request.
  readonly location: string;
  readonly checkedAtMs: number;
}

interface ListingRoute {
  readonly kind: 'listing';
  readonly dirPath: string;
  readonly urlPath: string;
}

interface ErrorRoute {
  readonly kind: 'error';
  readonly code: ErrorCode;
  readonly detail: string;
  readonly checkedAtMs: number;
}

type Route = FileRoute | RedirectRoute | ListingRoute | ErrorRoute;
type CachedRoute = FileRoute | RedirectRoute;

/**
 * Serve files below `vhost.root`. `tuning` overrides the cache bounds; the
 * defaults suit production. The header objects handed to `writeHead` are
 * shared between responses and frozen: stages that add headers must use
 * `setHeader`, not mutate them.
 */
export function createStaticHandler(vhost: VhostSpec, tuning: Partial<StaticCacheTuning> = {}): RequestHandler {
  if (vhost.root === null) {
    throw new Error(`static handler for ${vhost.domains.join(', ')} needs a root`);
  }
  const limits: StaticCacheTuning = { ...STATIC_CACHE_DEFAULTS, ...tuning };
  const root = path.resolve(vhost.root);
  // Index names come from config; a name that could climb or hide is never tried.
  const indexFiles = vhost.indexFiles.filter((name) => name !== '' && !name.includes('/') && !name.includes('\\') && !name.startsWith('.'));
  const directoryListing = vhost.directoryListing;

  // Keyed by the raw request path (query stripped): a hit skips decoding
  // entirely. Only paths that passed validation are ever stored, and the
  // validation is a pure function of the key, so a hit is as safe as a miss.
  // Map order is the eviction order; re-inserting on every revalidation makes
  // it roughly least-recently-used without touching the map on each hit.
  const routes = new Map<string, CachedRoute>();
  const negative = new Map<string, ErrorRoute>();
  const inflight = new Map<string, Promise<Route>>();
  let cachedBytes = 0;

  let realRoot: string | null = null;
  let realRootCheckedAtMs = 0;
  // /proc may be missing (chroot); then the post-open check is skipped and
  // the realpath check alone guards symlinks.
  let procFdUsable = true;

  function routeCost(route: CachedRoute): number {
    return ENTRY_OVERHEAD_BYTES + (route.kind === 'file' && route.entry.body !== null ? route.entry.body.length : 0);
  }

  function forget(key: string): void {
    const old = routes.get(key);
    if (old !== undefined) {
      cachedBytes -= routeCost(old);
      routes.delete(key);
    }
    negative.delete(key);
  }

  function remember(key: string, route: Route): void {
    forget(key);
    if (route.kind === 'listing') return;
    if (route.kind === 'error') {
      // Only answers that depend on the file system are worth caching; a
      // rejected path is cheaper to reject again than to store.
      if (route.code !== 'NOT_FOUND' && route.code !== 'FORBIDDEN_PATH') return;
      negative.set(key, route);
      while (negative.size > limits.maxNegativeEntries) {
        const oldest = negative.keys().next();
        if (oldest.done === true) break;
        negative.delete(oldest.value);
      }
      return;
    }
    routes.set(key, route);
    cachedBytes += routeCost(route);
    while ((cachedBytes > limits.maxCacheBytes || routes.size > limits.maxCachedRoutes) && routes.size > 1) {
      const oldest = routes.entries().next();
      if (oldest.done === true) break;
      const [oldestKey, oldestRoute] = oldest.value;
      cachedBytes -= routeCost(oldestRoute);
      routes.delete(oldestKey);
    }
  }

  async function currentRealRoot(nowMs: number): Promise<string> {
    // Re-resolved periodically: deploys often switch a "current" symlink.
    if (realRoot === null || nowMs - realRootCheckedAtMs >= limits.revalidateAfterMs) {
      realRoot = await fsp.realpath(root);
      realRootCheckedAtMs = nowMs;
    }
    return realRoot;
  }

  // Where an opened descriptor really points, or null when /proc cannot tell.
  async function openedPath(handle: FileHandle): Promise<string | null> {
    if (!procFdUsable) return null;
    try {
      return await fsp.readlink(`/proc/self/fd/${handle.fd}`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EACCES' && code !== 'EPERM') throw err;
      procFdUsable = false;
      return null;
    }
  }

  // Open a file found by `resolve` and prove the descriptor is the regular
  // file inside the root that the lookup saw. realpath and open are two
  // steps; a directory swapped for a symlink between them is caught here by
  // asking the kernel where the descriptor really points.
  async function openInside(realPath: string, nowMs: number): Promise<{ handle: FileHandle; stats: Stats } | ErrorRoute> {
    const rootReal = await currentRealRoot(nowMs);
    const handle = await fsp.open(realPath, OPEN_FLAGS);
    let handedOver = false;
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) return errorRoute('NOT_FOUND', 'not a regular file', nowMs);
      const actual = await openedPath(handle);
      if (actual !== null && !isServable(actual, rootReal)) {
        return errorRoute('NOT_FOUND', 'opened file is outside the root', nowMs);
      }
      handedOver = true;
      return { handle, stats };
    } finally {
      if (!handedOver) await handle.close();
    }
  }

  async function loadEntry(realPath: string, stats: Stats, nowMs: number): Promise<FileEntry | ErrorRoute> {
    if (stats.size > limits.maxCachedFileBytes) return makeEntry(realPath, stats, null);
    const opened = await openInside(realPath, nowMs);
    if ('kind' in opened) return opened;
    const { handle, stats: current } = opened;
    try {
      if (current.size > limits.maxCachedFileBytes) return makeEntry(realPath, current, null);
      // Not from the shared pool: a cached body lives long and must not pin
      // an 8 KiB slab that other, short-lived buffers share.
      const body = Buffer.allocUnsafeSlow(current.size);
      let filled = 0;
      while (filled < body.length) {
        const { bytesRead } = await handle.read(body, filled, body.length - filled, filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      // A file truncated mid-read is served as read; its size no longer
      // matches the next stat, so the next revalidation reloads it.
      return makeEntry(realPath, current, filled === body.length ? body : body.subarray(0, filled));
    } finally {
      await handle.close();
    }
  }

  async function fileRoute(realPath: string, stats: Stats, previous: CachedRoute | ErrorRoute | undefined, nowMs: number): Promise<Route> {
    if (previous !== undefined && previous.kind === 'file' && sameVersion(previous.entry, realPath, stats)) {
      return { kind: 'file', entry: previous.entry, checkedAtMs: nowMs };
    }
    const entry = await loadEntry(realPath, stats, nowMs);
    if ('kind' in entry) return entry;
    return { kind: 'file', entry, checkedAtMs: nowMs };
  }

  async function resolve(rawPath: string, previous: CachedRoute | ErrorRoute | undefined): Promise<Route> {
    const nowMs = Date.now();
    const parsed = decodeRequestPath(rawPath);
    if (typeof parsed === 'string') return errorRoute('BAD_PATH', parsed, nowMs);
    const { urlPath, decoded } = parsed;
    // nginx-style: a hidden file answers exactly like a missing one.
    if (hasHiddenSegment(decoded)) return errorRoute('NOT_FOUND', 'dotfile', nowMs);

    const candidate = path.join(root, decoded);
    // Unreachable after the dot-segment check; kept so that a future change
    // to the decoder cannot silently open a path outside the root.
    if (!isInside(candidate, root)) return errorRoute('BAD_PATH', 'path leaves the root', nowMs);

    try {
      const rootReal = await currentRealRoot(nowMs);
      const realPath = await fsp.realpath(candidate);
      if (!isServable(realPath, rootReal)) {
        return errorRoute('NOT_FOUND', 'symlink leads outside the root or to a dotfile', nowMs);
      }
      const stats = await fsp.stat(realPath);
      if (stats.isFile()) return await fileRoute(realPath, stats, previous, nowMs);
      if (!stats.isDirectory()) return errorRoute('NOT_FOUND', 'not a regular file', nowMs);

      if (!decoded.endsWith('/')) {
        // Relative links inside an index page resolve against the slash form.
        // Leading slashes are collapsed so "//evil.example" cannot become a
        // scheme-relative Location (an open redirect).
        return { kind: 'redirect', location: `/${urlPath.replace(/^\/+/, '')}/`, checkedAtMs: nowMs };
      }
      for (const name of indexFiles) {
        const found = await findIndex(path.join(realPath, name), rootReal);
        if (found === null) continue;
        if (found instanceof Error) return fsErrorRoute(found, nowMs);
        return await fileRoute(found.realPath, found.stats, previous, nowMs);
      }
      if (directoryListing) return { kind: 'listing', dirPath: realPath, urlPath: decoded };
      return errorRoute('NOT_FOUND', 'directory without index', nowMs);
    } catch (err) {
      return fsErrorRoute(err, nowMs);
    }
  }

  // An index file, null when absent (try the next name), or the error that stopped the search.
  async function findIndex(candidate: string, rootReal: string): Promise<{ realPath: string; stats: Stats } | Error | null> {
    try {
      const realPath = await fsp.realpath(candidate);
      if (!isServable(realPath, rootReal)) return null;
      const stats = await fsp.stat(realPath);
      return stats.isFile() ? { realPath, stats } : null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return null;
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  function lookup(rawPath: string, previous: CachedRoute | ErrorRoute | undefined): Promise<Route> {
    // Concurrent misses for one path share one file-system walk.
    const pending = inflight.get(rawPath);
    if (pending !== undefined) return pending;
    const walk = resolve(rawPath, previous).then((route) => {
      remember(rawPath, route);
      return route;
    });
    inflight.set(rawPath, walk);
    const clear = (): void => {
      inflight.delete(rawPath);
    };
    walk.then(clear, clear);
    return walk;
  }

  function answer(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: Route, target: string, queryAt: number): void {
    switch (route.kind) {
      case 'file':
        serveEntry(req, res, ctx, route.entry, null);
        return;
      case 'redirect':
        redirect(res, route.location + (queryAt === -1 ? '' : encodeQuery(target.slice(queryAt))));
        return;
      case 'listing':
        serveListing(req, res, ctx, route);
        return;
      case 'error':
        reject(res, ctx, route.code, route.detail);
        return;
    }
  }

  // Decide the status from the validators and Range, then answer from memory
  // or stream. `handle` is set on the second pass of a streamed file, once
  // the open descriptor has confirmed (or replaced) the cached metadata.
  function serveEntry(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, entry: FileEntry, handle: FileHandle | null): void {
    const headers = req.headers;
    const isGet = req.method === 'GET';

    if (isNotModified(headers, entry)) {
      if (handle !== null) closeQuietly(handle);
      res.writeHead(304, entry.headers304);
      res.end();
      return;
    }

    let start = 0;
    let end = entry.size - 1;
    let partial = false;
    // RFC 9110 §14.2: GET is the only method range handling is defined for;
    // a Range on HEAD is ignored.
    const range = isGet ? headers.range : undefined;
    if (range !== undefined && ifRangeHolds(headers['if-range'], entry)) {
      const byteRange = parseByteRange(range, entry.size);
      if (byteRange === UNSATISFIABLE) {
        if (handle !== null) closeQuietly(handle);
        // RFC 9110 §15.5.17: a 416 carries the current length.
        reject(res, ctx, 'RANGE_NOT_SATISFIABLE', 'range beyond the end', { 'Content-Range': `bytes */${entry.size}` });
        return;
      }
      if (byteRange !== IGNORE_RANGE) {
        partial = true;
        start = byteRange.start;
        end = byteRange.end;
      }
    }

    if (entry.body !== null) {
      if (!partial) {
        res.writeHead(200, entry.headers200);
        res.end(isGet ? entry.body : undefined);
        return;
      }
      res.writeHead(206, partialHeaders(entry, start, end));
      res.end(entry.body.subarray(start, end + 1));
      return;
    }

    if (!isGet) {
      res.writeHead(200, entry.headers200);
      res.end();
      return;
    }

    if (handle === null) {
      openForStreaming(req, res, ctx, entry);
      return;
    }
    if (end < start) {
      // An empty file: there is nothing to stream.
      closeQuietly(handle);
      res.writeHead(200, entry.headers200);
      res.end();
      return;
    }
    res.writeHead(partial ? 206 : 200, partial ? partialHeaders(entry, start, end) : entry.headers200);
    const body = handle.createReadStream({ start, end, highWaterMark: STREAM_CHUNK_BYTES });
    // pipeline destroys the file stream (closing the descriptor) when the
    // client goes away, and destroys the response when the read fails, so a
    // client never mistakes a truncated body for a whole one.
    pipeline(body, res, (err) => {
      if (err && (err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') {
        ctx.note(ERRORS.INTERNAL.event, `read failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      }
    });
  }

  function openForStreaming(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, entry: FileEntry): void {
    const nowMs = Date.now();
    openInside(entry.realPath, nowMs).then(
      (opened) => {
        if ('kind' in opened) {
          reject(res, ctx, opened.code, opened.detail);
          return;
        }
        if (res.destroyed) {
          closeQuietly(opened.handle);
          return;
        }
        // The file may have changed since the lookup was cached; the open
        // descriptor is the truth, and the validators must describe it.
        const current = sameVersion(entry, entry.realPath, opened.stats) ? entry : makeEntry(entry.realPath, opened.stats, null);
        serveEntry(req, res, ctx, current, opened.handle);
      },
      (err: unknown) => {
        const route = fsErrorRoute(err, nowMs);
        reject(res, ctx, route.code, route.detail);
      },
    );
  }

  function serveListing(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: ListingRoute): void {
    renderListing(route.dirPath, route.urlPath).then(
      (page) => {
        if (res.destroyed) return;
        res.writeHead(200, {
          'Content-Type': 'text/html; charset=utf-8',
          'Content-Length': String(page.length),
          // The page is generated from names anyone with write access to the
          // tree chose; it needs no script, so it gets none.
          'Content-Security-Policy': "default-src 'none'",
        });
        res.end(req.method === 'GET' ? page : undefined);
      },
      (err: unknown) => {
        const failed = fsErrorRoute(err, Date.now());
        reject(res, ctx, failed.code, failed.detail);
      },
    );
  }

  function handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): void {
    try {
      const method = req.method;
      if (method !== 'GET' && method !== 'HEAD') {
        reject(res, ctx, 'METHOD_NOT_ALLOWED', 'static files are read-only', ALLOW_HEADERS);
        return;
      }
      const target = req.url ?? '';
      const queryAt = target.indexOf('?');
      // The query never selects a file.
      const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
      const cached = routes.get(rawPath) ?? negative.get(rawPath);
      if (cached !== undefined && Date.now() - cached.checkedAtMs < limits.revalidateAfterMs) {
        answer(req, res, ctx, cached, target, queryAt);
        return;
      }
      lookup(rawPath, cached).then(
        (route) => {
          if (!res.destroyed) answer(req, res, ctx, route, target, queryAt);
        },
        (err: unknown) => {
          reject(res, ctx, 'INTERNAL', `static lookup failed: ${String(err)}`);
        },
      );
    } catch (err) {
      reject(res, ctx, 'INTERNAL', `static handler threw: ${String(err)}`);
    }
  }

  return {
    handle,
    close(): Promise<void> {
      // No timers to clear: freshness is checked against timestamps on use.
      routes.clear();
      negative.clear();
      cachedBytes = 0;
      return Promise.resolve();
    },
  };
}

// ---------------------------------------------------------------------------
// Request path: decode exactly once, refuse anything ambiguous.

const FORBIDDEN_RAW = /[^\x21-\x7e]|[\\#]/;
const ENCODED_SEPARATOR = /%(?:2f|5c)/i;
const DECODED_CONTROL = /[\x00-\x1f\x7f-\x9f]/;
const DOUBLE_ENCODED = /%(?:2e|2f|5c|00)/i;
const ABSOLUTE_FORM = /^https?:\/\/[^/?#]*/i;

// The path part of a request target, and its decoded form, or the reason
// it is refused. Decoding happens here and only here.
function decodeRequestPath(rawPath: string): { readonly urlPath: string; readonly decoded: string } | string {
  let urlPath = rawPath;
  if (urlPath.charCodeAt(0) !== 0x2f) {
    // RFC 9112 §3.2.2: a server must accept the absolute form too.
    const authority = ABSOLUTE_FORM.exec(urlPath);
    if (authority === null) return 'not an origin-form path';
    urlPath = urlPath.slice(authority[0].length);
    if (urlPath === '') urlPath = '/';
    if (urlPath.charCodeAt(0) !== 0x2f) return 'not an origin-form path';
  }
  // RFC 3986 §2: a URI is printable US-ASCII; anything else was sent
  // unencoded by something that is not a browser. A backslash is a separator
  // on other systems and "#" starts a fragment that is never sent.
  if (FORBIDDEN_RAW.test(urlPath)) return 'raw control, non-ASCII, backslash or fragment';
  // An encoded separator would survive segment checks as part of one name.
  if (ENCODED_SEPARATOR.test(urlPath)) return 'encoded path separator';
  let decoded: string;
  try {
    // Throws on malformed escapes and on invalid UTF-8, including overlong
    // forms such as %c0%ae (CVE-2000-0884 was exactly this).
    decoded = decodeURIComponent(urlPath);
  } catch {
    return 'malformed percent-encoding or UTF-8';
  }
  if (DECODED_CONTROL.test(decoded)) return 'encoded control character';
  // Something that is still an escape after one decoding was encoded twice:
  // a later layer that decodes again must never see a "." or "/" appear.
  if (DOUBLE_ENCODED.test(decoded)) return 'double encoding';
  // RFC 3986 §5.2.4: clients remove dot segments before sending; one that
  // arrives was put there on purpose.
  for (const segment of decoded.split('/')) {
    if (segment === '.' || segment === '..') return 'dot segment';
  }
  return { urlPath, decoded };
}

// Whether any segment is hidden (starts with "."). RFC 8615 puts
// well-known URIs (ACME challenges, security.txt) under /.well-known/, so
// that one first segment is allowed.
function hasHiddenSegment(decodedPath: string): boolean {
  let at = decodedPath.indexOf('/.');
  while (at !== -1) {
    const wellKnown =
      at === 0 && decodedPath.startsWith('/.well-known') && (decodedPath.length === 12 || decodedPath.charCodeAt(12) === 0x2f);
    if (!wellKnown) return true;
    at = decodedPath.indexOf('/.', at + 1);
  }
  return false;
}

function isInside(candidate: string, dir: string): boolean {
  if (candidate === dir) return true;
  const prefix = dir.endsWith(path.sep) ? dir : dir + path.sep;
  return candidate.startsWith(prefix);
}

// Inside the real root, and not reached through a hidden name (a symlink to .env is still .env).
function isServable(realPath: string, rootReal: string): boolean {
  if (!isInside(realPath, rootReal)) return false;
  const relative = rootReal === path.sep ? realPath : realPath.slice(rootReal.length);
  return !hasHiddenSegment(relative);
}

// A query echoed into Location: bytes outside printable ASCII are escaped.
function encodeQuery(query: string): string {
  return query.replace(/[^\x21-\x7e]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

// ---------------------------------------------------------------------------
// Entries, validators, conditionals and ranges.

function makeEntry(realPath: string, stats: Stats, body: Buffer | null): FileEntry {
  const size = body !== null ? body.length : stats.size;
  const mtimeMs = stats.mtimeMs;
  const lastModifiedSec = Math.floor(mtimeMs / 1000);
  const contentType = contentTypeFor(realPath);
  // Weak (RFC 9110 §8.8.1): size and mtime say the content is probably the
  // same, not that it is byte-for-byte identical.
  const etag = `W/"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
  const lastModified = new Date(lastModifiedSec * 1000).toUTCString();
  return {
    realPath,
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
}

function sameVersion(entry: FileEntry, realPath: string, stats: Stats): boolean {
  return (
    entry.realPath === realPath &&
    entry.ino === stats.ino &&
    entry.size === stats.size &&
    entry.mtimeMs === stats.mtimeMs &&
    entry.ctimeMs === stats.ctimeMs
  );
}

function partialHeaders(entry: FileEntry, start: number, end: number): OutgoingHttpHeaders {
  return {
    'Content-Type': entry.contentType,
    'Content-Length': String(end - start + 1),
    'Content-Range': `bytes ${start}-${end}/${entry.size}`,
    ETag: entry.etag,
    'Last-Modified': entry.lastModified,
    'Accept-Ranges': 'bytes',
  };
}

// RFC 9110 §13.2.2: If-None-Match is evaluated when present, and then
// If-Modified-Since is ignored; only GET and HEAD reach this handler, so
// a false condition is a 304.
function isNotModified(headers: IncomingHttpHeaders, entry: FileEntry): boolean {
  const noneMatch = headers['if-none-match'];
  if (noneMatch !== undefined) return matchesWeakly(noneMatch, entry.etag);
  const modifiedSince = headers['if-modified-since'];
  if (modifiedSince === undefined) return false;
  if (modifiedSince === entry.lastModified) return true;
  // RFC 9110 §13.1.3: an invalid date is ignored.
  const sinceSec = parseHttpDate(modifiedSince);
  return !Number.isNaN(sinceSec) && entry.lastModifiedSec <= sinceSec;
}

// If-None-Match list against our tag with the weak comparison (RFC 9110 §8.8.3.2).
function matchesWeakly(fieldValue: string, etag: string): boolean {
  if (fieldValue === etag) return true;
  // Our tags are always weak; compare opaque parts.
  const opaque = etag.slice(2);
  let at = 0;
  const length = fieldValue.length;
  while (at < length) {
    const ch = fieldValue.charCodeAt(at);
    if (ch === 0x20 || ch === 0x09 || ch === 0x2c) {
      at++;
      continue;
    }
    if (ch === 0x2a) return true; // "*": any current representation
    let tagStart = at;
    if (fieldValue.startsWith('W/', at)) tagStart = at + 2;
    if (fieldValue.charCodeAt(tagStart) !== 0x22) return false; // malformed: match nothing
    const close = fieldValue.indexOf('"', tagStart + 1);
    if (close === -1) return false;
    if (fieldValue.slice(tagStart, close + 1) === opaque) return true;
    at = close + 1;
  }
  return false;
}

// RFC 9110 §13.1.5: send the range only if the representation is still the
// one the client has part of. An entity tag must match strongly, which our
// weak tags never do, so it means "send it all"; a date must equal
// Last-Modified exactly.
function ifRangeHolds(ifRange: string | string[] | undefined, entry: FileEntry): boolean {
  if (ifRange === undefined) return true;
  if (typeof ifRange !== 'string') return false;
  if (ifRange.startsWith('"') || ifRange.startsWith('W/')) return false;
  if (ifRange === entry.lastModified) return true;
  return parseHttpDate(ifRange) === entry.lastModifiedSec;
}

const IGNORE_RANGE = Symbol('ignore range');
const UNSATISFIABLE = Symbol('unsatisfiable');
const DIGITS = /^[0-9]{1,15}$/;

// One byte range (RFC 9110 §14.1.2): "a-b", "a-" or "-n". Several ranges
// get the whole representation with 200, which §14.2 allows and which
// avoids multipart/byteranges amplification. A syntactically invalid
// header is ignored (§14.2 lets a server ignore it).
function parseByteRange(fieldValue: string, size: number): { start: number; end: number } | typeof IGNORE_RANGE | typeof UNSATISFIABLE {
  const eq = fieldValue.indexOf('=');
  if (eq === -1 || fieldValue.slice(0, eq).trim().toLowerCase() !== 'bytes') return IGNORE_RANGE;
  // §5.6.1: recipients accept empty list elements.
  const specs = fieldValue
    .slice(eq + 1)
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (specs.length !== 1) return IGNORE_RANGE;
  const spec = specs[0] ?? '';
  const dash = spec.indexOf('-');
  if (dash === -1) return IGNORE_RANGE;
  const first = spec.slice(0, dash);
  const last = spec.slice(dash + 1);

  if (first === '') {
    if (!DIGITS.test(last)) return IGNORE_RANGE;
    const suffixLength = Number(last);
    // §14.1.3: a zero suffix, or any suffix of an empty representation,
    // selects nothing.
    if (suffixLength === 0 || size === 0) return UNSATISFIABLE;
    return { start: Math.max(0, size - suffixLength), end: size - 1 };
  }
  if (!DIGITS.test(first) || (last !== '' && !DIGITS.test(last))) return IGNORE_RANGE;
  const start = Number(first);
  const lastPos = last === '' ? size - 1 : Number(last);
  if (lastPos < start && last !== '') return IGNORE_RANGE; // §14.1.1: invalid
  if (start >= size) return UNSATISFIABLE;
  return { start, end: Math.min(lastPos, size - 1) };
}

const MONTHS: Readonly<Record<string, number>> = {
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
};
const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850_DATE =
  /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME_DATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

// An HTTP-date in seconds since the epoch, or NaN. RFC 9110 §5.6.7: accept
// IMF-fixdate and the two obsolete forms, and nothing looser (Date.parse
// would accept almost anything).
function parseHttpDate(value: string): number {
  let day: string | undefined;
  let month: string | undefined;
  let year: number;
  let time: (string | undefined)[];
  let match = IMF_FIXDATE.exec(value);
  if (match !== null) {
    day = match[1];
    month = match[2];
    year = Number(match[3]);
    time = [match[4], match[5], match[6]];
  } else if ((match = RFC850_DATE.exec(value)) !== null) {
    day = match[1];
    month = match[2];
    // §5.6.7: a two-digit year more than 50 years ahead is in the past century.
    const twoDigit = Number(match[3]);
    const thisYear = new Date().getUTCFullYear();
    year = Math.floor(thisYear / 100) * 100 + twoDigit;
    if (year > thisYear + 50) year -= 100;
    time = [match[4], match[5], match[6]];
  } else if ((match = ASCTIME_DATE.exec(value)) !== null) {
    month = match[1];
    day = match[2]?.trim();
    year = Number(match[6]);
    time = [match[3], match[4], match[5]];
  } else {
    return NaN;
  }
  const monthIndex = month === undefined ? undefined : MONTHS[month];
  const dayOfMonth = Number(day);
  const [hours, minutes, seconds] = time.map(Number);
  if (monthIndex === undefined || hours === undefined || minutes === undefined || seconds === undefined) return NaN;
  if (hours > 23 || minutes > 59 || seconds > 60 || dayOfMonth < 1) return NaN;
  const ms = Date.UTC(year, monthIndex, dayOfMonth, hours, minutes, seconds);
  // Date.UTC rolls "31 Feb" into March; a real date does not move.
  if (new Date(ms).getUTCDate() !== dayOfMonth && seconds !== 60) return NaN;
  return Math.floor(ms / 1000);
}

// ---------------------------------------------------------------------------
// Responses that are not a file body.

// Nothing is left to tell the client once we are only releasing a
// descriptor we decided not to read; a failing close must not become an
// unhandled rejection that takes the worker down.
function closeQuietly(handle: FileHandle): void {
  handle.close().catch(() => undefined);
}

function errorRoute(code: ErrorCode, detail: string, nowMs: number): ErrorRoute {
  return { kind: 'error', code, detail, checkedAtMs: nowMs };
}

// How a file-system failure looks to the client: missing, forbidden, or our fault.
function fsErrorRoute(err: unknown, nowMs: number): ErrorRoute {
  const errno = err as NodeJS.ErrnoException;
  const detail = `${errno.code ?? 'error'} ${errno.syscall ?? ''}`.trim();
  switch (errno.code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ELOOP': // O_NOFOLLOW met a symlink swapped in after the lookup
    case 'ENAMETOOLONG':
      return errorRoute('NOT_FOUND', detail, nowMs);
    case 'EACCES':
    case 'EPERM':
      return errorRoute('FORBIDDEN_PATH', detail, nowMs);
    default:
      return errorRoute('INTERNAL', `${detail}: ${errno.message ?? String(err)}`, nowMs);
  }
}

function reject(res: ServerResponse, ctx: RequestContext, code: ErrorCode, detail: string, headers?: OutgoingHttpHeaders): void {
  ctx.note(ERRORS[code].event, detail);
  if (!res.destroyed) sendError(res, code, headers);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(301, { Location: location, 'Content-Length': '0' });
  res.end();
}

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch] ?? ch);
}

// A minimal index page: names escaped for HTML, links encoded as one path segment each.
async function renderListing(dirPath: string, urlPath: string): Promise<Buffer> {
  const dirents = await fsp.readdir(dirPath, { withFileTypes: true });
  const rows: string[] = [];
  if (urlPath !== '/') rows.push('<li><a href="../">../</a></li>');
  const visible = dirents.filter((dirent) => !dirent.name.startsWith('.'));
  visible.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const dirent of visible) {
    const suffix = dirent.isDirectory() ? '/' : '';
    let href: string;
    try {
      // encodeURIComponent also encodes ":", so a name like "javascript:x"
      // stays a relative path.
      href = encodeURIComponent(dirent.name) + suffix;
    } catch {
      continue; // lone surrogate: no URL can name it
    }
    rows.push(`<li><a href="${escapeHtml(href)}">${escapeHtml(dirent.name + suffix)}</a></li>`);
  }
  const title = escapeHtml(`Index of ${urlPath}`);
  const page =
    `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n` +
    `<body><h1>${title}</h1>\n<ul>\n${rows.join('\n')}\n</ul></body></html>\n`;
  return Buffer.from(page, 'utf8');
}
