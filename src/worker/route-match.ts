/**
 * Which [[vhosts.routes]] entry answers a request path (docs/serving.md):
 *
 * - The path is decoded once (static/path.ts) and compared decoded, with
 *   repeated slashes merged, so "/%61pi/x" and "//api/x" reach the "/api/"
 *   route as "/api/x" does; a path that cannot be decoded safely (a dot
 *   segment, an encoded "/" or "\", a malformed escape, a control
 *   character) is refused with 400 before any route is chosen: it could
 *   otherwise reach a backend that normalises it into a protected route.
 * - A route matches at segment boundaries: "/api" matches "/api" and
 *   "/api/..." but never "/apix"; "/api/" matches "/api/..." and sends
 *   "/api" to "/api/" (301, as nginx does for such a location).
 * - Compared case-sensitively, as nginx and Caddy do on Linux.
 * - The longest matching route wins; no route: the vhost itself answers.
 *
 * With strip_prefix, the backend sees the request path without the route's
 * segments (in the form the client sent them) and the query unchanged.
 */
import type { RouteSpec } from '../config/types.js';
import { decodeRequestPath, encodeQuery } from './handlers/static/path.js';

export type RouteMatch<T> =
  | { readonly kind: 'route'; readonly value: T; readonly url: string }
  | { readonly kind: 'fallback' }
  | { readonly kind: 'redirect'; readonly location: string }
  | { readonly kind: 'bad'; readonly reason: string };

interface Entry<T> {
  readonly path: string;
  /** Segments of the path, without a trailing empty one. */
  readonly depth: number;
  readonly directory: boolean;
  readonly stripPrefix: boolean;
  readonly value: T;
}

export class RouteTable<T> {
  readonly #entries: readonly Entry<T>[];

  /** `routes` longest path first (compile-sites.ts sorts them). */
  constructor(routes: readonly { readonly spec: RouteSpec; readonly value: T }[]) {
    this.#entries = routes.map(({ spec, value }) => {
      const directory = spec.path.endsWith('/');
      const trimmed = directory ? spec.path.slice(0, -1) : spec.path;
      return {
        path: spec.path,
        depth: trimmed === '' ? 0 : trimmed.split('/').length - 1,
        directory,
        stripPrefix: spec.stripPrefix,
        value,
      };
    });
  }

  match(target: string): RouteMatch<T> {
    const queryAt = target.indexOf('?');
    const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
    const query = queryAt === -1 ? '' : target.slice(queryAt);
    const parsed = decodeRequestPath(rawPath);
    if (typeof parsed === 'string') return { kind: 'bad', reason: parsed };
    const path = parsed.decoded.replace(/\/{2,}/g, '/');
    for (const entry of this.#entries) {
      if (entry.directory) {
        if (path.startsWith(entry.path)) return this.#matched(entry, parsed.urlPath, query);
        if (entry.path !== '/' && path === entry.path.slice(0, -1)) return { kind: 'redirect', location: entry.path + encodeQuery(query) };
      } else if (path === entry.path || (path.startsWith(entry.path) && path.charCodeAt(entry.path.length) === 0x2f)) {
        return this.#matched(entry, parsed.urlPath, query);
      }
    }
    return { kind: 'fallback' };
  }

  #matched(entry: Entry<T>, urlPath: string, query: string): RouteMatch<T> {
    if (!entry.stripPrefix || entry.depth === 0) return { kind: 'route', value: entry.value, url: urlPath + query };
    // Encoded separators were refused, so the raw segments are the decoded ones, one for one.
    const segments = urlPath.split('/').filter((segment, i, all) => segment !== '' || i === all.length - 1);
    const rest = segments.slice(entry.depth + (segments[0] === '' ? 1 : 0));
    const stripped = `/${rest.join('/')}`;
    return { kind: 'route', value: entry.value, url: stripped.replace(/\/{2,}/g, '/') + query };
  }
}
