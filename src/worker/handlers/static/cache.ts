/**
 * The static handler's memory of lookups: positive routes (files with their
 * bodies when small, directory redirects) and negative ones (404, 403) kept
 * apart, both bounded, so a scan of missing names cannot evict hot files.
 * A lookup is trusted for `revalidateAfterMs` (like nginx's
 * open_file_cache_valid), then the file system is asked again.
 *
 * Keyed by the raw request path (query stripped): a hit skips decoding
 * entirely. Only paths that passed validation are ever stored, and the
 * validation is a pure function of the key, so a hit is as safe as a miss.
 * Map order is the eviction order; re-inserting on every revalidation makes
 * it roughly least-recently-used without touching the map on each hit.
 */
import type { CachedRoute, ErrorRoute, Route } from './lookup.js';

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

/** What a cached entry costs besides its body: key, header objects, strings. */
const ENTRY_OVERHEAD_BYTES = 512;

export class RouteCache {
  readonly #routes = new Map<string, CachedRoute>();
  readonly #negative = new Map<string, ErrorRoute>();
  readonly #inflight = new Map<string, Promise<Route>>();
  #cachedBytes = 0;

  constructor(private readonly tuning: StaticCacheTuning) {}

  /** The remembered route of `rawPath`, fresh or not (a stale one is handed to the next lookup as `previous`). */
  get(rawPath: string): CachedRoute | ErrorRoute | undefined {
    return this.#routes.get(rawPath) ?? this.#negative.get(rawPath);
  }

  /** Whether a route looked up at `checkedAtMs` may still be answered without asking the file system. */
  isFresh(route: CachedRoute | ErrorRoute, nowMs: number): boolean {
    return nowMs - route.checkedAtMs < this.tuning.revalidateAfterMs;
  }

  /** Looks `rawPath` up with `resolve` and remembers the answer; concurrent misses for one path share one file-system walk. */
  lookup(rawPath: string, resolve: () => Promise<Route>): Promise<Route> {
    const pending = this.#inflight.get(rawPath);
    if (pending !== undefined) return pending;
    const walk = resolve().then((route) => {
      this.remember(rawPath, route);
      return route;
    });
    this.#inflight.set(rawPath, walk);
    const clear = (): void => {
      this.#inflight.delete(rawPath);
    };
    walk.then(clear, clear);
    return walk;
  }

  /** Bodies and routes held now (for the tests of the bounds). */
  get size(): { readonly routes: number; readonly negative: number; readonly bytes: number } {
    return { routes: this.#routes.size, negative: this.#negative.size, bytes: this.#cachedBytes };
  }

  clear(): void {
    this.#routes.clear();
    this.#negative.clear();
    this.#cachedBytes = 0;
  }

  remember(key: string, route: Route): void {
    this.forget(key);
    if (route.kind === 'listing') return;
    if (route.kind === 'error') {
      // Only answers that depend on the file system are worth caching; a
      // rejected path is cheaper to reject again than to store.
      if (route.code !== 'NOT_FOUND' && route.code !== 'FORBIDDEN_PATH') return;
      this.#negative.set(key, route);
      while (this.#negative.size > this.tuning.maxNegativeEntries) {
        const oldest = this.#negative.keys().next();
        if (oldest.done === true) break;
        this.#negative.delete(oldest.value);
      }
      return;
    }
    this.#routes.set(key, route);
    this.#cachedBytes += routeCost(route);
    while ((this.#cachedBytes > this.tuning.maxCacheBytes || this.#routes.size > this.tuning.maxCachedRoutes) && this.#routes.size > 1) {
      const oldest = this.#routes.entries().next();
      if (oldest.done === true) break;
      const [oldestKey, oldestRoute] = oldest.value;
      this.#cachedBytes -= routeCost(oldestRoute);
      this.#routes.delete(oldestKey);
    }
  }

  private forget(key: string): void {
    const old = this.#routes.get(key);
    if (old !== undefined) {
      this.#cachedBytes -= routeCost(old);
      this.#routes.delete(key);
    }
    this.#negative.delete(key);
  }
}

function routeCost(route: CachedRoute): number {
  return ENTRY_OVERHEAD_BYTES + (route.kind === 'file' && route.entry.body !== null ? route.entry.body.length : 0);
}
