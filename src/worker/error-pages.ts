/**
 * A site's own error pages (`error_pages = { 404 = "/404.html" }`): the
 * file below the site's root, read through the same containment as every
 * static file (static/lookup.ts) and remembered for a second, sent with the
 * status of the error it stands for. A missing, unreadable or large page
 * (over what the static cache holds, 256 KiB) falls back to the catalogue's
 * text. Only errors this server answers get one (never an upstream's own
 * 404), and never a 1xx, 204 or 304 (the keys are 4xx and 5xx).
 */
import type { SiteSpec } from '../config/types.js';
import type { ErrorPageSource } from './errors.js';
import { COMPRESSION_OFF } from './compression/off.js';
import { RouteCache, STATIC_CACHE_DEFAULTS } from './handlers/static/cache.js';
import { StaticRoot } from './handlers/static/lookup.js';

export class ErrorPages implements ErrorPageSource {
  readonly #pages: ReadonlyMap<number, string>;
  readonly #tree: StaticRoot;
  readonly #cache = new RouteCache(STATIC_CACHE_DEFAULTS);

  constructor(site: SiteSpec & { readonly root: string }) {
    this.#pages = new Map(Object.entries(site.errorPages).map(([status, page]): [number, string] => [Number(status), page]));
    // The page itself, not what try_files would make of its path.
    this.#tree = new StaticRoot({ ...site, tryFiles: null, directoryListing: false, compression: COMPRESSION_OFF }, STATIC_CACHE_DEFAULTS);
  }

  serves(status: number): boolean {
    return this.#pages.has(status);
  }

  page(status: number, send: (page: { body: Buffer; contentType: string } | null) => void): void {
    const pagePath = this.#pages.get(status);
    if (pagePath === undefined) {
      send(null);
      return;
    }
    const cached = this.#cache.get(pagePath);
    const found =
      cached !== undefined && this.#cache.isFresh(cached, Date.now())
        ? Promise.resolve(cached)
        : this.#cache.lookup(pagePath, () => this.#tree.resolve(pagePath, cached));
    found.then(
      (route) =>
        send(route.kind === 'file' && route.entry.body !== null ? { body: route.entry.body, contentType: route.entry.contentType } : null),
      () => send(null),
    );
  }
}
