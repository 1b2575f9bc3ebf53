/**
 * ACME HTTP-01 (RFC 8555 §8.3): GET or HEAD `<http_01_path>/<token>` on any
 * sites listener, for any Host, is answered with the key authorization the
 * master published (ACME_CHALLENGES), as text/plain.
 *
 * It runs once the request is known to be well-formed HTTP (header limits,
 * anti-smuggling) and before anything that could turn a CA away: access
 * lists and rate limits, the IDS, enforce_https's redirect, routing (a name
 * being validated may have no vhost yet). Blacklisted and banned addresses
 * never get here: they are closed at accept.
 *
 * Only with provider = "acme": with manual certificates, files under the
 * path (a certbot webroot) are served like any other.
 *
 * The path belongs to this stage: a token that is malformed (not base64url)
 * or not in the current set is 404, another method 405.
 */
import type { TlsSpec } from '../../config/types.js';
import { ACME_TOKEN, type AcmeChallenges } from '../acme-challenges.js';
import { HttpError } from '../errors.js';
import type { Stage } from './stage.js';

const ALLOW = Object.freeze({ Allow: 'GET, HEAD' });

export function acmeChallengeStage(tls: TlsSpec | null, challenges: AcmeChallenges): Stage | null {
  if (tls === null || !tls.answersAcmeChallenges) return null;
  const prefix = `${tls.acmeChallengePath}/`;
  return {
    name: 'acme-challenge',
    onRequest({ req, res, ctx }) {
      const url = req.url ?? '';
      if (!url.startsWith(prefix)) return;
      const query = url.indexOf('?');
      const token = url.slice(prefix.length, query === -1 ? undefined : query);
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError('METHOD_NOT_ALLOWED', 'ACME challenge', ALLOW);
      const keyAuthorization = ACME_TOKEN.test(token) ? challenges.keyAuthorization(token) : null;
      if (keyAuthorization === null) throw new HttpError('NOT_FOUND', 'no such ACME challenge');
      ctx.note('acme.http_01');
      res.writeHead(200, {
        'Content-Type': 'text/plain',
        'Content-Length': Buffer.byteLength(keyAuthorization),
        'Cache-Control': 'no-store',
      });
      res.end(req.method === 'GET' ? keyAuthorization : undefined);
      return 'answered';
    },
  };
}
