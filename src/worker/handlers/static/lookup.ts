/**
 * From a request path to what answers it, on the file system: the file (or
 * index file) below the vhost root, a redirect to a directory's slash form,
 * a listing, or the error. Every name the file system gives back is held to
 * the containment rules of path.ts once more after realpath, and an opened
 * descriptor is asked where it really points, so a symlink swapped in
 * between two steps leads nowhere outside the root.
 */
import { constants as fsConstants } from 'node:fs';
import type { Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import type { ContentCoding, SiteSpec } from '../../../config/types.js';
import type { Siblings } from '../../compression/static.js';
import { SUFFIX } from '../../compression/types.js';
import type { ErrorCode } from '../../errors.js';
import { contentTypeFor } from '../mime.js';
import { makeEntry, sameVersion, type FileEntry } from './entry.js';
import { decodeRequestPath, hasHiddenSegment, isInside, isServable } from './path.js';

// O_NOFOLLOW: the last component was resolved by realpath; if it has become
// a symlink since, refuse (ELOOP) rather than follow it.
// O_NONBLOCK: opening a FIFO swapped in after the stat must not hang a
// libuv thread waiting for a writer; it has no effect on regular files.
const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0);

export interface FileRoute {
  readonly kind: 'file';
  readonly entry: FileEntry;
  /** Fresh precompressed siblings (precompressed = true), or null. */
  readonly siblings: Siblings | null;
  readonly checkedAtMs: number;
}

export interface RedirectRoute {
  readonly kind: 'redirect';
  /** The slash form of the path; the request's query is appended per request. */
  readonly location: string;
  readonly checkedAtMs: number;
}

export interface ListingRoute {
  readonly kind: 'listing';
  readonly dirPath: string;
  readonly urlPath: string;
}

export interface ErrorRoute {
  readonly kind: 'error';
  readonly code: ErrorCode;
  readonly detail: string;
  readonly checkedAtMs: number;
}

/** What answers one request path. */
export type Route = FileRoute | RedirectRoute | ListingRoute | ErrorRoute;
/** The routes worth remembering for a while (cache.ts). */
export type CachedRoute = FileRoute | RedirectRoute;

export function errorRoute(code: ErrorCode, detail: string, nowMs: number): ErrorRoute {
  return { kind: 'error', code, detail, checkedAtMs: nowMs };
}

/** How a file-system failure looks to the client: missing, forbidden, or our fault. */
export function fsErrorRoute(err: unknown, nowMs: number): ErrorRoute {
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

/** A file opened inside the root, with its stats as the descriptor sees them. */
export interface OpenedFile {
  readonly handle: FileHandle;
  readonly stats: Stats;
}

/** The tree below one vhost's root, as the static handler reads it. */
export class StaticRoot {
  readonly #root: string;
  /** Index names come from config; a name that could climb or hide is never tried. */
  readonly #indexFiles: readonly string[];
  readonly #directoryListing: boolean;
  /** try_files entries, or null: the path alone. */
  readonly #tryFiles: readonly string[] | null;
  /** Codings whose precompressed siblings are looked for. */
  readonly #siblingCodings: readonly ContentCoding[];
  #realRoot: string | null = null;
  #realRootCheckedAtMs = 0;
  /**
   * /proc may be missing (chroot); then the post-open check is skipped and
   * the realpath check alone guards symlinks.
   */
  #procFdUsable = true;

  constructor(
    vhost: Pick<SiteSpec, 'indexFiles' | 'directoryListing' | 'tryFiles' | 'compression'> & { readonly root: string },
    private readonly tuning: {
      /** Files up to this size are read whole into their entry. */
      readonly maxCachedFileBytes: number;
      /** How long the root's realpath is trusted. */
      readonly revalidateAfterMs: number;
    },
  ) {
    this.#root = path.resolve(vhost.root);
    this.#indexFiles = vhost.indexFiles.filter(
      (name) => name !== '' && !name.includes('/') && !name.includes('\\') && !name.startsWith('.'),
    );
    this.#directoryListing = vhost.directoryListing;
    this.#tryFiles = vhost.tryFiles;
    this.#siblingCodings = vhost.compression.precompressed ? vhost.compression.algorithms : [];
  }

  /**
   * What answers `rawPath` (the request path without its query); `previous`
   * is reused when the file did not change. With try_files, each entry in
   * turn ("$uri" a file, "$uri/" a directory with an index, "/x" that path),
   * and the first that exists answers; none: 404 (docs/serving.md).
   */
  async resolve(rawPath: string, previous: CachedRoute | ErrorRoute | undefined): Promise<Route> {
    const nowMs = Date.now();
    const parsed = decodeRequestPath(rawPath);
    if (typeof parsed === 'string') return errorRoute('BAD_PATH', parsed, nowMs);
    const { urlPath, decoded } = parsed;
    if (this.#tryFiles === null) return this.resolveDecoded(decoded, urlPath, 'any', !decoded.endsWith('/'), previous, nowMs);
    for (const entry of this.#tryFiles) {
      if (entry === '=404') break;
      // The decoded path passed every check above, and compile checked the literal parts.
      const candidate = entry.replaceAll('$uri', decoded).replace(/\/{2,}/g, '/');
      const mode = candidate.endsWith('/') ? 'directory' : 'file';
      const redirect = entry === '$uri/' && !decoded.endsWith('/');
      const route = await this.resolveDecoded(candidate, urlPath, mode, redirect, previous, nowMs);
      if (route.kind !== 'error' || route.code !== 'NOT_FOUND') return route;
    }
    return errorRoute('NOT_FOUND', 'try_files: none exists', nowMs);
  }

  /**
   * What answers the decoded path: `mode` "file" takes only a regular file,
   * "directory" only a directory (its index or listing), "any" either; a
   * directory is first redirected to its slash form when `redirectToSlash`.
   */
  private async resolveDecoded(
    decoded: string,
    urlPath: string,
    mode: 'any' | 'file' | 'directory',
    redirectToSlash: boolean,
    previous: CachedRoute | ErrorRoute | undefined,
    nowMs: number,
  ): Promise<Route> {
    // nginx-style: a hidden file answers exactly like a missing one.
    if (hasHiddenSegment(decoded)) return errorRoute('NOT_FOUND', 'dotfile', nowMs);

    const candidate = path.join(this.#root, decoded);
    // Unreachable after the dot-segment check; kept so that a future change
    // to the decoder cannot silently open a path outside the root.
    if (!isInside(candidate, this.#root)) return errorRoute('BAD_PATH', 'path leaves the root', nowMs);

    try {
      const rootReal = await this.currentRealRoot(nowMs);
      const realPath = await fsp.realpath(candidate);
      if (!isServable(realPath, rootReal)) {
        return errorRoute('NOT_FOUND', 'symlink leads outside the root or to a dotfile', nowMs);
      }
      const stats = await fsp.stat(realPath);
      if (stats.isFile()) {
        if (mode === 'directory') return errorRoute('NOT_FOUND', 'a file where a directory was asked for', nowMs);
        return await this.fileRoute(realPath, stats, previous, nowMs, rootReal);
      }
      if (!stats.isDirectory() || mode === 'file') return errorRoute('NOT_FOUND', 'not a regular file', nowMs);

      if (redirectToSlash) {
        // Relative links inside an index page resolve against the slash form.
        // Leading slashes are collapsed so "//evil.example" cannot become a
        // scheme-relative Location (an open redirect).
        return { kind: 'redirect', location: `/${urlPath.replace(/^\/+/, '')}/`, checkedAtMs: nowMs };
      }
      for (const name of this.#indexFiles) {
        const found = await this.findIndex(path.join(realPath, name), rootReal);
        if (found === null) continue;
        if (found instanceof Error) return fsErrorRoute(found, nowMs);
        return await this.fileRoute(found.realPath, found.stats, previous, nowMs, rootReal);
      }
      if (this.#directoryListing) return { kind: 'listing', dirPath: realPath, urlPath: decoded };
      return errorRoute('NOT_FOUND', 'directory without index', nowMs);
    } catch (err) {
      return fsErrorRoute(err, nowMs);
    }
  }

  /**
   * Open a file found by `resolve` and prove the descriptor is the regular
   * file inside the root that the lookup saw. realpath and open are two
   * steps; a directory swapped for a symlink between them is caught here by
   * asking the kernel where the descriptor really points.
   */
  async openInside(realPath: string, nowMs: number): Promise<OpenedFile | ErrorRoute> {
    const rootReal = await this.currentRealRoot(nowMs);
    const handle = await fsp.open(realPath, OPEN_FLAGS);
    let handedOver = false;
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) return errorRoute('NOT_FOUND', 'not a regular file', nowMs);
      const actual = await this.openedPath(handle);
      if (actual !== null && !isServable(actual, rootReal)) {
        return errorRoute('NOT_FOUND', 'opened file is outside the root', nowMs);
      }
      handedOver = true;
      return { handle, stats };
    } finally {
      if (!handedOver) await handle.close();
    }
  }

  private async currentRealRoot(nowMs: number): Promise<string> {
    // Re-resolved periodically: deploys often switch a "current" symlink.
    if (this.#realRoot === null || nowMs - this.#realRootCheckedAtMs >= this.tuning.revalidateAfterMs) {
      this.#realRoot = await fsp.realpath(this.#root);
      this.#realRootCheckedAtMs = nowMs;
    }
    return this.#realRoot;
  }

  /** Where an opened descriptor really points, or null when /proc cannot tell. */
  private async openedPath(handle: FileHandle): Promise<string | null> {
    if (!this.#procFdUsable) return null;
    try {
      return await fsp.readlink(`/proc/self/fd/${handle.fd}`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EACCES' && code !== 'EPERM') throw err;
      this.#procFdUsable = false;
      return null;
    }
  }

  private async loadEntry(realPath: string, stats: Stats, nowMs: number, contentType?: string): Promise<FileEntry | ErrorRoute> {
    const { maxCachedFileBytes } = this.tuning;
    if (stats.size > maxCachedFileBytes) return makeEntry(realPath, stats, null, contentType);
    const opened = await this.openInside(realPath, nowMs);
    if ('kind' in opened) return opened;
    const { handle, stats: current } = opened;
    try {
      if (current.size > maxCachedFileBytes) return makeEntry(realPath, current, null, contentType);
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
      return makeEntry(realPath, current, filled === body.length ? body : body.subarray(0, filled), contentType);
    } finally {
      await handle.close();
    }
  }

  private async fileRoute(
    realPath: string,
    stats: Stats,
    previous: CachedRoute | ErrorRoute | undefined,
    nowMs: number,
    rootReal: string,
  ): Promise<Route> {
    const siblings = this.#siblingCodings.length === 0 ? null : await this.findSiblings(realPath, stats, rootReal, nowMs);
    if (previous !== undefined && previous.kind === 'file' && sameVersion(previous.entry, realPath, stats)) {
      return { kind: 'file', entry: previous.entry, siblings, checkedAtMs: nowMs };
    }
    const entry = await this.loadEntry(realPath, stats, nowMs);
    if ('kind' in entry) return entry;
    return { kind: 'file', entry, siblings, checkedAtMs: nowMs };
  }

  /**
   * file.br, file.zst, file.gz beside `realPath`: regular files inside the
   * root, not older than the file (a stale sibling would serve old content).
   * They are served with the file's type.
   */
  private async findSiblings(realPath: string, stats: Stats, rootReal: string, nowMs: number): Promise<Siblings> {
    const found: Partial<Record<ContentCoding, FileEntry>> = {};
    for (const coding of this.#siblingCodings) {
      const sibling = await this.findIndex(`${realPath}.${SUFFIX[coding]}`, rootReal);
      if (sibling === null || sibling instanceof Error || sibling.stats.mtimeMs < stats.mtimeMs) continue;
      const entry = await this.loadEntry(sibling.realPath, sibling.stats, nowMs, contentTypeFor(realPath));
      if (!('kind' in entry)) found[coding] = entry;
    }
    return found;
  }

  /** An index file, null when absent (try the next name), or the error that stopped the search. */
  private async findIndex(candidate: string, rootReal: string): Promise<{ realPath: string; stats: Stats } | Error | null> {
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
}
