/**
 * The static handler's lookup cache (src/worker/handlers/static/cache.ts)
 * and a file's entry (entry.ts): bounds on routes, bytes and negative
 * entries, shared walks, freshness, and which answers are remembered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RouteCache, STATIC_CACHE_DEFAULTS, type StaticCacheTuning } from '../../src/worker/handlers/static/cache.js';
import { makeEntry, partialHeaders, sameVersion } from '../../src/worker/handlers/static/entry.js';
import { errorRoute, type Route } from '../../src/worker/handlers/static/lookup.js';

const STATS = { ino: 7, size: 11, mtimeMs: 1_705_321_845_123.5, ctimeMs: 1_705_321_845_123.5 };

const fileRoute = (name: string, bodyBytes: number, checkedAtMs = 0): Route => ({
  kind: 'file',
  entry: makeEntry(`/srv/${name}`, { ...STATS, size: bodyBytes }, Buffer.alloc(bodyBytes)),
  siblings: null,
  checkedAtMs,
});

const cacheOf = (tuning: Partial<StaticCacheTuning>): RouteCache => new RouteCache({ ...STATIC_CACHE_DEFAULTS, ...tuning });

describe('route cache', () => {
  it('evicts the oldest route past maxCachedRoutes', () => {
    const cache = cacheOf({ maxCachedRoutes: 2 });
    for (const name of ['a', 'b', 'c']) cache.remember(`/${name}`, fileRoute(name, 1));
    assert.equal(cache.get('/a'), undefined);
    assert.notEqual(cache.get('/b'), undefined);
    assert.notEqual(cache.get('/c'), undefined);
  });

  it('evicts by bytes past maxCacheBytes, but always keeps the newest route', () => {
    const cache = cacheOf({ maxCacheBytes: 3100 });
    cache.remember('/a', fileRoute('a', 1000));
    cache.remember('/b', fileRoute('b', 1000));
    assert.equal(cache.size.routes, 2);
    cache.remember('/c', fileRoute('c', 1000));
    assert.equal(cache.get('/a'), undefined);
    assert.ok(cache.size.bytes <= 3100, String(cache.size.bytes));
    cache.remember('/huge', fileRoute('huge', 10_000));
    assert.deepEqual([cache.size.routes, cache.get('/huge')?.kind], [1, 'file']);
  });

  it('keeps 404 and 403 apart, bounded, and never evicting files', () => {
    const cache = cacheOf({ maxNegativeEntries: 2, maxCachedRoutes: 10 });
    cache.remember('/hot', fileRoute('hot', 1));
    for (let i = 0; i < 50; i++) cache.remember(`/missing${i}`, errorRoute(i % 2 === 0 ? 'NOT_FOUND' : 'FORBIDDEN_PATH', 'ENOENT', 0));
    assert.equal(cache.size.negative, 2);
    assert.equal(cache.get('/hot')?.kind, 'file');
    assert.equal(cache.get('/missing49')?.kind, 'error');
  });

  it('does not remember refused paths, internal errors or listings', () => {
    const cache = cacheOf({});
    cache.remember('/%2f', errorRoute('BAD_PATH', 'encoded path separator', 0));
    cache.remember('/broken', errorRoute('INTERNAL', 'EIO', 0));
    cache.remember('/dir/', { kind: 'listing', dirPath: '/srv/dir', urlPath: '/dir/' });
    assert.deepEqual(cache.size, { routes: 0, negative: 0, bytes: 0 });
  });

  it('replaces a path that turned from missing to present, and counts its bytes once', () => {
    const cache = cacheOf({});
    cache.remember('/late', errorRoute('NOT_FOUND', 'ENOENT', 0));
    cache.remember('/late', fileRoute('late', 100));
    cache.remember('/late', fileRoute('late', 100));
    assert.deepEqual([cache.size.routes, cache.size.negative, cache.get('/late')?.kind], [1, 0, 'file']);
    assert.equal(cache.size.bytes, 100 + 512);
  });

  it('is fresh for revalidateAfterMs after the lookup', () => {
    const cache = cacheOf({ revalidateAfterMs: 1000 });
    const route = errorRoute('NOT_FOUND', 'ENOENT', 5000);
    assert.equal(cache.isFresh(route, 5999), true);
    assert.equal(cache.isFresh(route, 6000), false);
  });

  it('shares one walk among concurrent lookups of one path, and walks again once it settled', async () => {
    const cache = cacheOf({});
    let walks = 0;
    const resolve = async (): Promise<Route> => {
      walks += 1;
      await Promise.resolve();
      return fileRoute('x', 1);
    };
    const [first, second] = await Promise.all([cache.lookup('/x', resolve), cache.lookup('/x', resolve)]);
    assert.equal(first, second);
    assert.equal(walks, 1);
    await cache.lookup('/x', resolve);
    assert.equal(walks, 2);
  });

  it('forgets everything on clear', () => {
    const cache = cacheOf({});
    cache.remember('/a', fileRoute('a', 10));
    cache.remember('/b', errorRoute('NOT_FOUND', 'ENOENT', 0));
    cache.clear();
    assert.deepEqual(cache.size, { routes: 0, negative: 0, bytes: 0 });
    assert.equal(cache.get('/a'), undefined);
  });
});

describe('file entry', () => {
  it('carries a weak validator from size and mtime, and the headers of 200 and 304', () => {
    const entry = makeEntry('/srv/hello.txt', STATS, Buffer.from('hello world'));
    assert.equal(entry.etag, `W/"b-${Math.floor(STATS.mtimeMs).toString(16)}"`);
    assert.equal(entry.lastModified, 'Mon, 15 Jan 2024 12:30:45 GMT');
    assert.equal(entry.lastModifiedSec, 1_705_321_845);
    assert.deepEqual(entry.headers200, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': '11',
      ETag: entry.etag,
      'Last-Modified': entry.lastModified,
      'Accept-Ranges': 'bytes',
    });
    assert.deepEqual(entry.headers304, { ETag: entry.etag });
    assert.ok(Object.isFrozen(entry.headers200) && Object.isFrozen(entry.headers304));
  });

  it('takes the size of the body it holds (a file truncated while read)', () => {
    assert.equal(makeEntry('/srv/a.bin', { ...STATS, size: 100 }, Buffer.alloc(40)).headers200['Content-Length'], '40');
    assert.equal(makeEntry('/srv/a.bin', { ...STATS, size: 100 }, null).size, 100);
  });

  it('is the same version only while path, inode, size, mtime and ctime all agree', () => {
    const entry = makeEntry('/srv/a', STATS, null);
    assert.equal(sameVersion(entry, '/srv/a', STATS), true);
    assert.equal(sameVersion(entry, '/srv/b', STATS), false);
    for (const key of ['ino', 'size', 'mtimeMs', 'ctimeMs'] as const) {
      assert.equal(sameVersion(entry, '/srv/a', { ...STATS, [key]: STATS[key] + 1 }), false, key);
    }
  });

  it('describes a range with Content-Range and its own length', () => {
    const entry = makeEntry('/srv/a.bin', { ...STATS, size: 100 }, null);
    const headers = partialHeaders(entry, 10, 19);
    assert.equal(headers['Content-Length'], '10');
    assert.equal(headers['Content-Range'], 'bytes 10-19/100');
  });
});
