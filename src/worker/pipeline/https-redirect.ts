/**
 * security.enforce_https: a request over plain HTTP is answered with a
 * redirect to the same host, path and query over HTTPS — 301 for GET and
 * HEAD, 308 for other methods so a client repeats them unchanged (RFC 9110
 * §15.4.9) — except ACME HTTP-01 challenges, which must be answered over
 * HTTP (RFC 8555 §8.3).
 */
import type { TlsSpec } from '../../config/types.js';
import { HttpError } from '../errors.js';
import { hostOf } from '../router.js';
import type { Stage } from './stage.js';

/** A DNS name or a bracketed IPv6 literal: nothing else goes into a Location this stage writes. */
const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])$/;

export function httpsRedirectStage(tls: TlsSpec | null): Stage | null {
  if (tls === null || !tls.enforceHttps) return null;
  const portSuffix = tls.httpsPort === 443 ? '' : `:${tls.httpsPort}`;
  const challengePrefix = `${tls.acmeChallengePath}/`;
  return {
    name: 'https-redirect',
    onRequest({ req, res, ctx }) {
      if (ctx.protocol === 'https') return;
      const target = req.url ?? '/';
      if (target.startsWith(challengePrefix)) return;
      // Only an origin-form target is kept: anything else would let the request choose where the redirect points.
      const host = hostOf(req.headers.host);
      if (!HOST_NAME.test(host)) throw new HttpError('BAD_REQUEST', 'no host name to redirect to');
      const location = `https://${host}${portSuffix}${target.startsWith('/') ? target : '/'}`;
      const status = req.method === 'GET' || req.method === 'HEAD' ? 301 : 308;
      res.writeHead(status, { Location: location, 'Content-Length': 0, 'Cache-Control': 'no-store' });
      res.end();
      return 'answered';
    },
  };
}
