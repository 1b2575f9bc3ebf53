/**
 * Route stage: Host header -> virtual host, then the request path -> the
 * route of that vhost that answers it (route-match.ts), or the vhost
 * itself. A Host that no vhost claims gets 421 Misdirected Request (RFC
 * 9110 §15.5.20): this server is not authoritative for it. On a vhost with
 * routes, a path that cannot be decoded safely gets 400 before any route is
 * chosen, and "/api" is sent to a "/api/" route's slash form (301).
 *
 * Once the site is known, the response takes the site's security headers,
 * its error pages and, for proxied answers, compression on the fly; with
 * strip_prefix, req.url becomes what the backend sees (logs keep the
 * request's own target).
 */
import type { Logger } from 'pino';
import type { CompiledConfig, SiteSpec } from '../../config/types.js';
import { CidrSet } from '../../net/cidr.js';
import { BasicAuth, BcryptVerifier } from '../auth/basic.js';
import { compressResponse } from '../compression/on-the-fly.js';
import { ErrorPages } from '../error-pages.js';
import { HttpError, useErrorPages } from '../errors.js';
import type { ProxySupport } from '../handlers/proxy-support.js';
import { createRedirectHandler } from '../handlers/redirect.js';
import { createStaticHandler } from '../handlers/static/handler.js';
import type { RequestHandler } from '../handlers/types.js';
import { useHeaderPolicy } from '../response-headers.js';
import { RouteTable } from '../route-match.js';
import { hostOf, VhostRouter } from '../router.js';
import { isWebSocketRequest } from '../websocket/handshake.js';
import type { WebSocketTunnels } from '../websocket/tunnel.js';
import type { SiteRuntime, Stage, VhostRuntime } from './stage.js';
import { refuseUnwantedUpgrade } from './upgrade.js';

/** What handlers need of their worker: where proxies log, where WebSocket tunnels live, the proxy's code (loaded when the config has a proxy backend). */
export interface HandlerContext {
  readonly log: Logger | null;
  readonly tunnels: WebSocketTunnels | null;
  readonly proxy: ProxySupport | null;
}

function handlerFor(spec: SiteSpec, context: HandlerContext): RequestHandler {
  switch (spec.backend.type) {
    case 'static':
      return createStaticHandler(spec);
    case 'proxy':
      // loadProxySupport(config) returns it for every config with a proxy backend: missing, it is this program's bug.
      if (context.proxy === null) throw new Error('a proxy backend without the proxy code loaded (loadProxySupport)');
      return context.proxy.createProxyHandler(spec.backend, context);
    case 'redirect':
      return createRedirectHandler(spec.backend);
  }
}

interface SiteEntry extends SiteRuntime {
  readonly errorPages: ErrorPages | null;
}

interface VhostEntry extends VhostRuntime {
  readonly own: SiteEntry;
  readonly routes: RouteTable<SiteEntry> | null;
}

export function routeStage(
  config: CompiledConfig,
  context: HandlerContext = { log: null, tunnels: null, proxy: null },
): Stage & { close(): Promise<void> } {
  const verifier = new BcryptVerifier();
  const sites: SiteEntry[] = [];
  // Sites with the same proxy backend (a route that inherits its vhost's) share one handler: one set of
  // connection pools and health checks per upstream group. The config crossed the channel as JSON, so the
  // backend's text is its identity.
  const proxies = new Map<string, RequestHandler>();
  const handlerOf = (spec: SiteSpec): RequestHandler => {
    if (spec.backend.type !== 'proxy') return handlerFor(spec, context);
    const key = JSON.stringify(spec.backend);
    let handler = proxies.get(key);
    if (handler === undefined) {
      handler = handlerFor(spec, context);
      proxies.set(key, handler);
    }
    return handler;
  };
  const siteFor = (spec: SiteSpec): SiteEntry => {
    const site: SiteEntry = {
      spec,
      handler: handlerOf(spec),
      access: spec.access === null ? null : { allow: new CidrSet(spec.access.allow), deny: new CidrSet(spec.access.deny) },
      auth: spec.auth === null ? null : new BasicAuth(spec.auth.realm, config.htpasswd[spec.auth.htpasswdFile] ?? [], verifier),
      errorPages: spec.root !== null && Object.keys(spec.errorPages).length > 0 ? new ErrorPages({ ...spec, root: spec.root }) : null,
    };
    sites.push(site);
    return site;
  };
  const vhosts: VhostEntry[] = config.vhosts.map((spec) => {
    const own = siteFor(spec);
    const routes = spec.routes.length === 0 ? null : new RouteTable(spec.routes.map((route) => ({ spec: route, value: siteFor(route) })));
    return { spec, handler: own.handler, own, routes };
  });
  const router = new VhostRouter(vhosts.map((runtime) => ({ spec: runtime.spec, value: runtime })));
  return {
    name: 'route',
    onRequest(exchange) {
      const { req, res, ctx } = exchange;
      const host = hostOf(req.headers.host);
      ctx.host = host;
      const vhost = router.match(host);
      exchange.vhost = vhost;
      if (vhost === null) throw new HttpError('UNKNOWN_HOST', host);
      let site = vhost.own;
      if (vhost.routes !== null) {
        const match = vhost.routes.match(ctx.target);
        if (match.kind === 'bad') throw new HttpError('BAD_PATH', match.reason);
        if (match.kind === 'redirect') {
          res.writeHead(301, { Location: match.location, 'Content-Length': '0' });
          res.end();
          return 'answered';
        }
        if (match.kind === 'route') {
          site = match.value;
          req.url = match.url;
        }
      }
      exchange.site = site;
      refuseUnwantedUpgrade(exchange, site.spec.backend);
      if (site.spec.responseHeaders !== null) useHeaderPolicy(res, site.spec.responseHeaders);
      if (site.errorPages !== null) useErrorPages(res, site.errorPages);
      // A WebSocket's 101 and frames are no response body to compress.
      if (site.spec.backend.type === 'proxy' && !isWebSocketRequest(req)) compressResponse(req, res, site.spec.compression);
    },
    async close() {
      await Promise.all(sites.map((site) => site.handler.close?.()));
      await verifier.close();
    },
  };
}
