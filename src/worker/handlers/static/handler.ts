/**
 * The static file handler: maps a request path onto a file below the vhost
 * root, refusing anything that could reach outside it, and serves it with
 * validators (ETag, Last-Modified), conditional requests and single byte
 * ranges (RFC 9110 §8.8, §13, §14).
 *
 * The parts, each in its file: path.ts decodes the path and holds the
 * containment rules; lookup.ts walks the file system below the root;
 * cache.ts remembers lookups (small files whole, in memory); entry.ts is one
 * version of a file with its headers; conditional.ts decides 304, 206 and
 * 416; listing.ts renders a directory. This file answers.
 */
import type { FileHandle } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import type { SiteSpec } from '../../../config/types.js';
import { siblingForm, StaticCompression } from '../../compression/static.js';
import { createEncoder } from '../../compression/types.js';
import { ERRORS, sendError, type ErrorCode } from '../../errors.js';
import { answerCached } from '../../response-headers.js';
import type { RequestContext, RequestHandler } from '../types.js';
import { RouteCache, STATIC_CACHE_DEFAULTS, type StaticCacheTuning } from './cache.js';
import { IGNORE_RANGE, ifRangeHolds, isNotModified, parseByteRange, UNSATISFIABLE } from './conditional.js';
import { makeEntry, partialHeaders, sameVersion, type Representation } from './entry.js';
import { listingHeaders, renderListing } from './listing.js';
import { fsErrorRoute, StaticRoot, type FileRoute, type ListingRoute, type Route } from './lookup.js';
import { encodeQuery } from './path.js';
import { closeQuietly, sendFileRange } from './send-range.js';

/** Bytes per read of a streamed file. */
const STREAM_CHUNK_BYTES = 512 * 1024;

/** RFC 9110 §15.5.6: a 405 must say which methods are supported. */
const ALLOW_HEADERS: OutgoingHttpHeaders = Object.freeze({ Allow: 'GET, HEAD' });

/**
 * Serve files below `vhost.root`. `tuning` overrides the cache bounds; the
 * defaults suit production. The header objects handed to `writeHead` are
 * shared between responses and frozen: stages that add headers must use
 * `setHeader`, not mutate them.
 */
export function createStaticHandler(site: SiteSpec, tuning: Partial<StaticCacheTuning> = {}): RequestHandler {
  const { root } = site;
  if (root === null) throw new Error('a static site needs a root');
  const limits: StaticCacheTuning = { ...STATIC_CACHE_DEFAULTS, ...tuning };
  const tree = new StaticRoot({ ...site, root }, limits);
  const cache = new RouteCache(limits);
  const compression = new StaticCompression(site.compression);

  function answer(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: Route, target: string, queryAt: number): void {
    switch (route.kind) {
      case 'file':
        serveFile(req, res, ctx, route);
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

  /** The file's representation for this request's Accept-Encoding (compression/static.ts), then the answer. */
  function serveFile(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: FileRoute): void {
    const ranged = req.method === 'GET' && req.headers.range !== undefined;
    const chosen = compression.select(route.entry, route.siblings, req.headers['accept-encoding'], ranged);
    if (chosen === null) serveEntry(req, res, ctx, route.entry, null);
    else if (chosen instanceof Promise) {
      chosen.then(
        (representation) => res.destroyed || serveEntry(req, res, ctx, representation, null),
        (err: unknown) => reject(res, ctx, 'INTERNAL', `compression failed: ${String(err)}`),
      );
    } else serveEntry(req, res, ctx, chosen, null);
  }

  // Decide the status from the validators and Range, then answer from memory
  // or stream. `handle` is set on the second pass of a streamed file, once
  // the open descriptor has confirmed (or replaced) the cached metadata.
  function serveEntry(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    entry: Representation,
    handle: FileHandle | null,
  ): void {
    const headers = req.headers;
    const isGet = req.method === 'GET';

    if (isNotModified(headers, entry)) {
      if (handle !== null) closeQuietly(handle);
      answerCached(res, 304, entry.headers304, undefined);
      return;
    }

    let start = 0;
    let end = entry.size - 1;
    let partial = false;
    // RFC 9110 §14.2: GET is the only method range handling is defined for;
    // a Range on HEAD is ignored. An encoded answer is never partial.
    const range = isGet && entry.coding === null ? headers.range : undefined;
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
        answerCached(res, 200, entry.headers200, isGet ? entry.body : undefined);
        return;
      }
      res.writeHead(206, partialHeaders(entry.source, start, end, entry.vary));
      res.end(entry.body.subarray(start, end + 1));
      return;
    }

    if (!isGet) {
      answerCached(res, 200, entry.headers200, undefined);
      return;
    }

    if (handle === null) {
      openForStreaming(req, res, ctx, entry);
      return;
    }
    if (end < start && !entry.encodeWhileStreaming) {
      // An empty file: there is nothing to stream.
      closeQuietly(handle);
      res.writeHead(200, entry.headers200);
      res.end();
      return;
    }
    res.writeHead(partial ? 206 : 200, partial ? partialHeaders(entry.source, start, end, entry.vary) : entry.headers200);
    const done = (err: NodeJS.ErrnoException | null): void => {
      if (err && err.code !== 'ERR_STREAM_PREMATURE_CLOSE') {
        ctx.note(ERRORS.INTERNAL.event, `read failed: ${err.code ?? err.message}`);
      }
    };
    // Large reads: on this machine 64 KiB reads streamed a 100 MB file at a
    // third of nginx's rate, 512 KiB ones at its rate (docs/serving.md).
    if (!entry.encodeWhileStreaming || entry.coding === null) {
      sendFileRange(handle, res, start, end, STREAM_CHUNK_BYTES, done);
      return;
    }
    // pipeline destroys the file stream (closing the descriptor) when the
    // client goes away, and destroys the response when the read fails, so a
    // client never mistakes a truncated body for a whole one.
    const file = handle.createReadStream({ highWaterMark: STREAM_CHUNK_BYTES });
    pipeline(file, createEncoder(entry.coding, 'stream', entry.source.size), res, done);
  }

  function openForStreaming(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, entry: Representation): void {
    const nowMs = Date.now();
    const source = entry.source;
    tree.openInside(source.realPath, nowMs).then(
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
        // descriptor is the truth, and the validators must describe it: a
        // changed file is sent as it now is (not encoded on the fly; a
        // changed precompressed sibling still as what it is).
        let current = entry;
        if (!sameVersion(source, source.realPath, opened.stats)) {
          const fresh = makeEntry(source.realPath, opened.stats, null, source.contentType);
          current = entry.coding !== null && !entry.encodeWhileStreaming ? siblingForm(fresh, entry.coding) : fresh;
        }
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
        res.writeHead(200, listingHeaders(page));
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
      const cached = cache.get(rawPath);
      if (cached !== undefined && cache.isFresh(cached, Date.now())) {
        answer(req, res, ctx, cached, target, queryAt);
        return;
      }
      cache
        .lookup(rawPath, () => tree.resolve(rawPath, cached))
        .then(
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
      cache.clear();
      return Promise.resolve();
    },
  };
}

function reject(res: ServerResponse, ctx: RequestContext, code: ErrorCode, detail: string, headers?: OutgoingHttpHeaders): void {
  ctx.note(ERRORS[code].event, detail);
  if (!res.destroyed) sendError(res, code, headers);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(301, { Location: location, 'Content-Length': '0' });
  res.end();
}
