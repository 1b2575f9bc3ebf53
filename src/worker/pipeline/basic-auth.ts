/**
 * Basic authentication stage (a site's `auth`): no credentials get 401 with
 * the challenge (routine: a browser asks first, then prompts); wrong or
 * malformed ones get 401 too, are audited (`auth.failed`, without the
 * password) and count as a limit breach towards a ban, as a 429 does; too
 * many verifications waiting get 503. The user admitted is what the access
 * log names.
 */
import { clientKey } from '../../net/cidr.js';
import type { AuthOutcome } from '../auth/basic.js';
import { HttpError } from '../errors.js';
import type { MasterPort } from '../master-link.js';
import type { Exchange, Stage } from './stage.js';

export function basicAuthStage(link: MasterPort): Stage {
  const settle = (exchange: Exchange, outcome: AuthOutcome, challenge: string): void => {
    switch (outcome.outcome) {
      case 'ok':
        exchange.ctx.user = outcome.user;
        return;
      case 'missing':
        throw new HttpError('AUTH_REQUIRED', undefined, { 'WWW-Authenticate': challenge });
      case 'busy':
        throw new HttpError('AUTH_OVERLOADED', 'too many password checks waiting', { 'Retry-After': '1' });
      case 'failed': {
        const ip = clientKey(exchange.ctx.clientIp);
        if (ip !== null) link.report(ip, 0, 1);
        throw new HttpError('AUTH_FAILED', outcome.detail, { 'WWW-Authenticate': challenge });
      }
    }
  };
  /** A function of its own: a closure in onRequest would make every request, with auth or without, allocate its scope. */
  const settleLater = (exchange: Exchange, outcome: Promise<AuthOutcome>, challenge: string): Promise<void> =>
    outcome.then((settled) => settle(exchange, settled, challenge));
  return {
    name: 'basic-auth',
    onRequest(exchange) {
      const auth = exchange.site?.auth;
      if (auth == null) return;
      const outcome = auth.check(exchange.req.headers.authorization);
      if (outcome instanceof Promise) return settleLater(exchange, outcome, auth.challenge);
      settle(exchange, outcome, auth.challenge);
    },
  };
}
