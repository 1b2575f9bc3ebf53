/**
 * Route stage: Host header -> virtual host and its handler. A Host that no
 * vhost claims gets 421 Misdirected Request (RFC 9110 §15.5.20): this server
 * is not authoritative for it.
 */
import type { Logger } from 'pino';
import type { CompiledConfig, VhostSpec } from '../../config/types.js';
import { HttpError } from '../errors.js';
import { createProxyHandler } from '../handlers/proxy.js';
import { createRedirectHandler } from '../handlers/redirect.js';
import { createStaticHandler } from '../handlers/static/handler.js';
import type { RequestHandler } from '../handlers/types.js';
import { hostOf, VhostRouter } from '../router.js';
import type { Stage, VhostRuntime } from './stage.js';
import { refuseUnwantedUpgrade } from './upgrade.js';
import { useHeaderPolicy } from '../response-headers.js';
import type { WebSocketTunnels } from '../websocket/tunnel.js';

/** What handlers need of their worker: where proxies log, where WebSocket tunnels live. */
export interface HandlerContext {
  readonly log: Logger | null;
  readonly tunnels: WebSocketTunnels | null;
}

function handlerFor(spec: VhostSpec, context: HandlerContext): RequestHandler {
  switch (spec.backend.type) {
    case 'static':
      return createStaticHandler(spec);
    case 'proxy':
      return createProxyHandler(spec.backend, context);
    case 'redirect':
      return createRedirectHandler(spec.backend);
  }
}

export function routeStage(
  config: CompiledConfig,
  context: HandlerContext = { log: null, tunnels: null },
): Stage & { close(): Promise<void> } {
  const vhosts: VhostRuntime[] = config.vhosts.map((spec) => ({ spec, handler: handlerFor(spec, context) }));
  const router = new VhostRouter(vhosts.map((runtime) => ({ spec: runtime.spec, value: runtime })));
  return {
    name: 'route',
    onRequest(exchange) {
      const host = hostOf(exchange.req.headers.host);
      exchange.ctx.host = host;
      exchange.vhost = router.match(host);
      if (exchange.vhost === null) throw new HttpError('UNKNOWN_HOST', host);
      refuseUnwantedUpgrade(exchange, exchange.vhost.spec.backend);
      if (exchange.vhost.spec.responseHeaders !== null) useHeaderPolicy(exchange.res, exchange.vhost.spec.responseHeaders);
    },
    async close() {
      await Promise.all(vhosts.map((vhost) => vhost.handler.close?.()));
    },
  };
}
