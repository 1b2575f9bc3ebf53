/**
 * Upgrade stage: a request that asks to switch protocols is a WebSocket
 * opening handshake that is one (RFC 6455 §4.1, RFC 8441 §4-§5), or it is
 * refused here, before any stage reads a body it does not have. An Upgrade
 * to anything but websocket is refused (403): never a plain answer in place
 * of the switch the client asked for. Whether the route proxies WebSocket is
 * the route stage's to say (webSocketAllowed below), once it has chosen.
 */
import type { BackendSpec } from '../../config/types.js';
import { HttpError } from '../errors.js';
import { checkHandshake, upgradeOf } from '../websocket/handshake.js';
import type { Exchange, Stage } from './stage.js';

export function upgradeStage(): Stage {
  return {
    name: 'upgrade',
    onRequest({ req }) {
      const upgrade = upgradeOf(req);
      if (upgrade.kind === 'none') return;
      if (upgrade.kind === 'other') throw new HttpError('UPGRADE_REFUSED', `Upgrade: ${upgrade.protocol.slice(0, 64)}`);
      checkHandshake(req, upgrade.http2);
    },
  };
}

/** A WebSocket handshake reaches only a proxy backend that allows it (websocket = true, the default). */
export function refuseUnwantedUpgrade(exchange: Exchange, backend: BackendSpec): void {
  if (upgradeOf(exchange.req).kind !== 'websocket') return;
  if (backend.type === 'proxy' && backend.webSocket) return;
  throw new HttpError('UPGRADE_REFUSED', backend.type === 'proxy' ? 'websocket = false' : `a ${backend.type} backend`);
}
