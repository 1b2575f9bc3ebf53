/**
 * [[vhosts]] and their [[vhosts.routes]] compiled into sites: each route
 * gets every setting, its own or its vhost's, so that a worker never merges
 * anything per request. Pure, like compile.ts (which passes in how a backend
 * and a header policy compile).
 *
 * What a route leaves out comes from its vhost; `backend` too, except that a
 * route setting `root` or `try_files` without a backend serves files (nginx:
 * a location with `root` and no `proxy_pass`). `compression` and `headers`
 * merge key by key over the vhost's; every other key replaces the vhost's
 * whole (`error_pages` as nginx's `error_page` in a location does).
 */
import path from 'node:path';
import { isValidCidr } from '../net/cidr.js';
import type { ConfigProblem } from './problem.js';
import type { RawConfig, RawRoute, RawVhost } from './schema.js';
import type { BackendSpec, CompressionSpec, HeaderPolicy, RouteSpec, SiteSpec, VhostSpec } from './types.js';

/** Compression unless a site says otherwise: text types of 1 KiB and more (nginx gzip_min_length is 20, Caddy's 512). */
export const COMPRESSION_DEFAULTS: CompressionSpec = Object.freeze({
  enabled: true,
  algorithms: Object.freeze(['br', 'zstd', 'gzip'] as const),
  precompressed: false,
  minLengthBytes: 1024,
});

type RawHeaders = RawConfig['security']['headers'];
type RawSite = Omit<RawRoute, 'path' | 'strip_prefix'> | RawVhost;

export interface SiteCompilers {
  backend(raw: { backend?: RawVhost['backend'] }, key: string, problems: ConfigProblem[]): BackendSpec;
  headers(merged: RawHeaders): HeaderPolicy;
}

/** RFC 3986 pchar without "%": a route path is written decoded, and only in ASCII. */
const ROUTE_PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$/;

/**
 * A route path as the worker matches it, or the reason it is refused: no
 * empty, "." or ".." segment (it could never match a normalised request
 * path, or would mean a traversal), no escape.
 */
export function routePathProblem(value: string): string | null {
  if (!ROUTE_PATH.test(value)) return 'an absolute path of letters, digits and - . _ ~ ! $ & \' ( ) * + , ; = : @ / (no "%", "?", "#")';
  const segments = value.slice(1).split('/');
  // "/api/" ends in one empty segment: that one is the directory form.
  const inner = value.endsWith('/') ? segments.slice(0, -1) : segments;
  if (value !== '/' && inner.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    return 'no empty, "." or ".." segments';
  }
  return null;
}

/** A try_files entry: "$uri", "$uri/", "=404" last, or an absolute path (which may hold "$uri"). */
function tryFilesProblem(entries: readonly string[]): string | null {
  for (const [i, entry] of entries.entries()) {
    if (entry === '=404') {
      if (i !== entries.length - 1) return '"=404" only as the last entry';
      continue;
    }
    const literal = entry.replaceAll('$uri', '');
    if (!entry.startsWith('$uri') && !entry.startsWith('/')) return `${JSON.stringify(entry)}: start with "/" or "$uri"`;
    if (literal !== '' && literal !== '/' && routePathProblem(literal.startsWith('/') ? literal : `/${literal}`) !== null) {
      return `${JSON.stringify(entry)}: ${routePathProblem(literal.startsWith('/') ? literal : `/${literal}`)}`;
    }
  }
  return null;
}

function compileCompression(parent: CompressionSpec, raw: RawSite['compression']): CompressionSpec {
  if (raw === undefined) return parent;
  return {
    enabled: raw.enabled ?? parent.enabled,
    algorithms: raw.algorithms ?? parent.algorithms,
    precompressed: raw.precompressed ?? parent.precompressed,
    minLengthBytes: raw.min_length ?? parent.minLengthBytes,
  };
}

/** The headers of security.headers with each layer's keys over it, custom headers merged by name. */
function mergeHeaders(server: RawHeaders, layers: readonly (RawVhost['headers'] | undefined)[]): RawHeaders {
  let merged: RawHeaders = server;
  for (const layer of layers) {
    if (layer === undefined) continue;
    const custom: Record<string, string> = {};
    for (const [name, value] of [...Object.entries(merged.custom), ...Object.entries(layer.custom ?? {})]) {
      for (const existing of Object.keys(custom)) if (existing.toLowerCase() === name.toLowerCase()) delete custom[existing];
      custom[name] = value;
    }
    merged = { ...merged, ...layer, custom };
  }
  return merged;
}

interface Context {
  readonly raw: RawConfig;
  readonly resolvePath: (file: string) => string;
  readonly problems: ConfigProblem[];
  readonly compilers: SiteCompilers;
}

/** The directory a site serves, as a host path and as the worker sees it inside the jail. */
function compileRoot(context: Context, root: string, key: string): { root: string; hostRoot: string } {
  const hostRoot = context.resolvePath(root);
  const chroot = context.raw.process.isolation.chroot;
  if (chroot === undefined) return { root: hostRoot, hostRoot };
  // The worker sees the jail as "/": serve the same directory by its path inside.
  const jail = context.resolvePath(chroot);
  if (hostRoot !== jail && !hostRoot.startsWith(jail + path.sep)) {
    context.problems.push({ key, message: `${hostRoot} lies outside process.isolation.chroot (${jail})` });
  }
  return { root: path.join('/', path.relative(jail, hostRoot)), hostRoot };
}

function compileSite(
  context: Context,
  raw: RawSite,
  key: string,
  parent: SiteSpec | null,
  headerLayers: readonly (RawVhost['headers'] | undefined)[],
): SiteSpec {
  const { problems, compilers } = context;
  const roots = raw.root === undefined ? null : compileRoot(context, raw.root, `${key}.root`);
  const servesFiles = parent !== null && (raw.root !== undefined || raw.try_files !== undefined);
  const backend =
    raw.backend !== undefined || parent === null
      ? compilers.backend(raw, key, problems)
      : servesFiles
        ? ({ type: 'static' } as const)
        : parent.backend;
  const root = roots?.root ?? parent?.root ?? null;
  const hostRoot = roots?.hostRoot ?? parent?.hostRoot ?? null;
  if (backend.type === 'static' && root === null) {
    const message =
      parent === null ? 'required for a static vhost (or set backend.type)' : 'required for a static route: set it here or on the vhost';
    problems.push({ key: `${key}.root`, message });
  }
  const tryFiles = raw.try_files ?? parent?.tryFiles ?? null;
  if (raw.try_files !== undefined) {
    const problem = tryFilesProblem(raw.try_files);
    if (problem !== null) problems.push({ key: `${key}.try_files`, message: problem });
    if (backend.type !== 'static') problems.push({ key: `${key}.try_files`, message: 'only for a static backend' });
  }
  const errorPages = raw.error_pages ?? parent?.errorPages ?? {};
  if (raw.error_pages !== undefined) {
    for (const [status, page] of Object.entries(raw.error_pages)) {
      const problem = routePathProblem(page);
      if (problem !== null || page.endsWith('/'))
        problems.push({ key: `${key}.error_pages.${status}`, message: problem ?? 'a file, not a directory' });
    }
    if (Object.keys(raw.error_pages).length > 0 && root === null) {
      problems.push({ key: `${key}.error_pages`, message: 'the pages are read below root: set root' });
    }
  }
  const auth =
    raw.auth === undefined
      ? (parent?.auth ?? null)
      : raw.auth === false
        ? null
        : { realm: raw.auth.realm, htpasswdFile: context.resolvePath(raw.auth.htpasswd) };
  const access = raw.access ?? parent?.access ?? null;
  if (raw.access !== undefined) {
    for (const list of ['allow', 'deny'] as const) {
      raw.access[list].forEach((entry, i) => {
        if (!isValidCidr(entry))
          problems.push({ key: `${key}.access.${list}[${i}]`, message: `not an IP address or CIDR: ${JSON.stringify(entry)}` });
      });
    }
  }
  const layers = [...headerLayers, raw.headers];
  return {
    root,
    hostRoot,
    indexFiles: parent?.indexFiles ?? (raw as RawVhost).index_files,
    directoryListing: parent?.directoryListing ?? (raw as RawVhost).directory_listing,
    tryFiles,
    errorPages,
    backend,
    auth,
    access,
    compression: compileCompression(parent?.compression ?? COMPRESSION_DEFAULTS, raw.compression),
    responseHeaders: layers.every((layer) => layer === undefined)
      ? null
      : compilers.headers(mergeHeaders(context.raw.security.headers, layers)),
  };
}

function compileRoute(context: Context, vhost: RawVhost, site: SiteSpec, route: RawRoute, key: string): RouteSpec {
  const problem = routePathProblem(route.path);
  if (problem !== null) context.problems.push({ key: `${key}.path`, message: problem });
  const { path: routePath, strip_prefix: stripPrefix, ...fields } = route;
  return { ...compileSite(context, fields, key, site, [vhost.headers]), path: routePath, stripPrefix };
}

export function compileVhosts(
  raw: RawConfig,
  resolvePath: (file: string) => string,
  problems: ConfigProblem[],
  compilers: SiteCompilers,
): VhostSpec[] {
  const context: Context = { raw, resolvePath, problems, compilers };
  return raw.vhosts.map((vhost, i) => {
    const key = `vhosts[${i}]`;
    const site = compileSite(context, vhost, key, null, []);
    const seen = new Set<string>();
    const routes = vhost.routes.map((route, j) => {
      if (seen.has(route.path)) problems.push({ key: `${key}.routes[${j}].path`, message: `${route.path} is routed twice` });
      seen.add(route.path);
      return compileRoute(context, vhost, site, route, `${key}.routes[${j}]`);
    });
    // Longest prefix first: the first that matches is the longest (route-match.ts).
    routes.sort((a, b) => b.path.length - a.path.length);
    return { domains: vhost.domains.map((domain) => domain.toLowerCase()), ...site, routes };
  });
}
