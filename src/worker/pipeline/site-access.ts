/**
 * Site access stage: a route's (or vhost's) `access` lists, on the client IP
 * the client-ip stage resolved. Deny first, then, when allow is not empty,
 * only addresses it lists: 403, audited. A client that is not an IP address
 * (a Unix socket peer) matches no list, so it is refused wherever an allow
 * list exists.
 */
import { clientKey } from '../../net/cidr.js';
import { HttpError } from '../errors.js';
import type { Stage } from './stage.js';

export function siteAccessStage(): Stage {
  return {
    name: 'site-access',
    onRequest({ site, ctx }) {
      const access = site?.access;
      if (access == null) return;
      const ip = clientKey(ctx.clientIp);
      if (ip !== null && access.deny.has(ip)) throw new HttpError('ACCESS_DENIED', 'denied by the site access list');
      if (access.allow.size > 0 && (ip === null || !access.allow.has(ip))) {
        throw new HttpError('ACCESS_DENIED', 'not in the site allow list');
      }
    },
  };
}
