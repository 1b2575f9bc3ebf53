/**
 * The request pipeline, in the order every request meets it. Each stage is
 * one module; a stage rejects by throwing an HttpError from the catalogue
 * (errors.ts), and the first rejection answers (docs/lifecycle.md shows the
 * status each stage answers with).
 *
 * What a connection passes before any request exists (access lists and bans,
 * the PROXY protocol, the limits per client) is the accept gate's:
 * ../connection/gate.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { CompiledConfig, Protocol } from '../../config/types.js';
import { createAudit, createAuditThrottle, withSuppressed } from '../audit.js';
import type { MasterPort } from '../master-link.js';
import type { IdsMatch } from '../ids/index.js';
import type { WorkerMetrics } from '../metrics.js';
import type { AcmeChallenges } from '../acme-challenges.js';
import { http2Stream } from '../http2-request.js';
import { accessStage } from './access.js';
import { acmeChallengeStage } from './acme-challenge.js';
import { httpsRedirectStage } from './https-redirect.js';
import { idsStage } from './ids.js';
import { HttpError, sendError } from '../errors.js';
import { accessLogStage } from './access-log.js';
import { antiSmugglingStage } from './anti-smuggling.js';
import { bodyLimitsStage, rejectInFlight } from './body-limits.js';
import { clientIpStage } from './client-ip.js';
import { headerLimitsStage } from './header-limits.js';
import { basicAuthStage } from './basic-auth.js';
import type { ProxySupport } from '../handlers/proxy-support.js';
import { routeStage } from './route.js';
import { upgradeStage } from './upgrade.js';
import type { WebSocketTunnels } from '../websocket/tunnel.js';
import { siteAccessStage } from './site-access.js';
import type { Exchange, ExchangeContext, Stage } from './stage.js';

export interface Pipeline {
  /** Runs the stages and the handler; the exchange says, once the response is done, which vhost answered. */
  handle(req: IncomingMessage, res: ServerResponse, protocol: Protocol, peerIp: string): Exchange;
  close(): Promise<void>;
  /** The stages this config gets, in the order a request meets them (docs/lifecycle.md lists them so). */
  readonly stageNames: readonly string[];
}

/**
 * "full" is what every server runs. "routing-only" keeps only the route
 * stage: it exists so `npm run bench` can measure what the hardening stages
 * cost (bench/pipeline-server.ts); nothing in the server selects it.
 */
export type PipelineVariant = 'full' | 'routing-only';

/** Rejections a client can draw at line rate (405 also on the ACME path, before rate limits): audited at most once a second per client. */
const FLOODABLE: ReadonlySet<string> = new Set([
  'RATE_LIMITED',
  'CLIENT_BLOCKED',
  'IDS_BLOCKED',
  'METHOD_NOT_ALLOWED',
  'AUTH_FAILED',
  'AUTH_OVERLOADED',
  'ACCESS_DENIED',
]);
/** Rejections that are part of normal browsing: the access log has them, the audit log does not. */
const ROUTINE: ReadonlySet<string> = new Set(['NOT_FOUND', 'UNKNOWN_HOST', 'AUTH_REQUIRED']);

export function createPipeline(
  config: CompiledConfig,
  log: Logger,
  link: MasterPort,
  metrics: WorkerMetrics,
  challenges: AcmeChallenges,
  variant: PipelineVariant = 'full',
  tunnels: WebSocketTunnels | null = null,
  proxy: ProxySupport | null = null,
): Pipeline {
  const route = routeStage(config, { log, tunnels, proxy });
  const accessLog = accessLogStage(config, log);
  const access = accessStage(config, link);
  const auditLog = createAudit(config.audit);
  const throttle = createAuditThrottle();
  /** One audit event about a request; the path without its query (query strings carry tokens as often as search terms). */
  const auditRequest = (
    exchange: Exchange,
    event: string,
    status: number | undefined,
    detail: string | undefined,
    host: string | undefined,
  ): void => {
    const { req, ctx } = exchange;
    auditLog({ event, status, clientIp: ctx.clientIp, method: req.method, host, path: ctx.target.split('?', 1)[0], detail }, req.headers);
  };
  /** Every rejection is an audit event, whether or not the access log is on. */
  const audit = (exchange: Exchange, rejection: HttpError): void => {
    exchange.ctx.note(rejection.spec.event, rejection.detail);
    if (ROUTINE.has(rejection.code)) return; // routine, not a security event
    metrics.rejection(rejection.spec.event);
    let suppressed = 0;
    if (FLOODABLE.has(rejection.code)) {
      const count = throttle(`${rejection.code} ${exchange.ctx.clientIp}`);
      if (count === null) return;
      suppressed = count;
    }
    auditRequest(
      exchange,
      rejection.spec.event,
      rejection.spec.status,
      withSuppressed(rejection.detail, suppressed),
      exchange.ctx.host || undefined,
    );
  };
  /** An IDS match, blocking or not: a security event of its own (the block is audited again as the rejection). */
  const auditMatch = (exchange: Exchange, match: IdsMatch): void => {
    const suppressed = throttle(`ids ${match.rule} ${exchange.ctx.clientIp}`);
    if (suppressed === null) return;
    const detail = `rule=${match.rule} category=${match.category} severity=${match.severity} location=${match.location} action=${match.action}`;
    auditRequest(exchange, 'ids.match', undefined, withSuppressed(detail, suppressed), exchange.ctx.host || exchange.req.headers.host);
  };
  const ids = config.ids === null ? null : idsStage(config.ids, link, metrics, auditMatch);
  const httpsRedirect = httpsRedirectStage(config.tls);
  const acmeChallenge = acmeChallengeStage(config.tls, challenges);
  /** A rejection raised while the body streams, after the handler started. */
  const rejectLater = (exchange: Exchange, rejection: HttpError): void => {
    audit(exchange, rejection);
    rejectInFlight(exchange.res, rejection.code);
  };
  // The order is the design: read it top to bottom.
  // Security headers are not a stage that could be skipped: the response
  // class of every server adds them at writeHead (../response-headers.ts).
  // The PROXY protocol is read per connection, before any request: ../connection/gate.ts.
  const stages: Stage[] = [
    accessLog, //                           one line per finished request, whatever stage answered
    clientIpStage(config.forwarded), //     403, 400 (private client, trusted proxy naming none)
    headerLimitsStage(config), //           505, 414, 431, 400 (control characters, duplicate Host; HTTP/2 header list)
    antiSmugglingStage(), //                400, 501 (framing Node's parser lets through)
    upgradeStage(), //                      403 (an Upgrade other than websocket), 400, 426 (a WebSocket handshake that is not one)
    ...(acmeChallenge === null ? [] : [acmeChallenge]), // ACME HTTP-01 answers (200, 404, 405), before access lists, rate limits, IDS, redirects
    bodyLimitsStage(config, rejectLater, ids?.gate), // 413, 408 (too large, too slow), before and while the body streams; 403 (IDS, on the body)
    access, //                              403 (blacklisted or banned client), 429 (rate limit)
    ...(ids === null ? [] : [ids.stage]), // 403 (IDS: path, query, headers)
    route, //                               Host -> vhost (421 when nothing matches), path -> route (400, 301)
    // After routing: a Host no vhost claims gets 421, never a redirect to it; before the
    // route's own checks: credentials are never asked for over plain HTTP when HTTPS is enforced.
    ...(httpsRedirect === null ? [] : [httpsRedirect]), // 301/308 to HTTPS (enforce_https)
    siteAccessStage(), //                   403 (the route's or vhost's allow/deny lists)
    basicAuthStage(link), //                401 (Basic authentication), 503 (too many checks waiting)
  ];
  const selected = variant === 'full' ? stages : [route];
  const requestStages = selected.filter((stage) => stage.onRequest !== undefined);

  const reject = (exchange: Exchange, error: unknown): void => {
    const rejection = error instanceof HttpError ? error : new HttpError('INTERNAL', String(error));
    if (rejection.code === 'INTERNAL') log.error({ err: error }, 'request handling failed');
    audit(exchange, rejection);
    sendError(exchange.res, rejection.code, rejection.headers);
  };
  const runStages = (exchange: Exchange, from: number): void => {
    try {
      for (let i = from; i < requestStages.length; i++) {
        const waiting = requestStages[i]!.onRequest!(exchange);
        // The stage wrote the answer itself (a redirect to HTTPS): nothing more to do.
        if (waiting === 'answered') return;
        if (waiting !== undefined) {
          resumeAfter(exchange, waiting, i + 1);
          return;
        }
      }
      exchange.site!.handler.handle(exchange.req, exchange.res, exchange.ctx);
    } catch (error) {
      reject(exchange, error);
    }
  };
  /**
   * The rest of the stages, from `next`, once a stage that waited settles.
   * A function of its own: closures inside runStages's loop would make
   * every request allocate the loop's scope, once per stage, waiting or not.
   */
  const resumeAfter = (exchange: Exchange, waiting: Promise<void>, next: number): void => {
    // The client may have gone while the stage waited: then there is no one to answer.
    waiting.then(
      () => clientGone(exchange) || runStages(exchange, next),
      (error: unknown) => clientGone(exchange) || reject(exchange, error),
    );
  };

  return {
    handle(req, res, protocol, peerIp) {
      const exchange: Exchange = {
        req,
        res,
        peerIp,
        ctx: {
          clientIp: '',
          protocol,
          host: '',
          event: null,
          detail: null,
          target: req.url ?? '',
          user: null,
          // Set by the client-ip stage; present from the start, so the context keeps one shape (no property added per request).
          peer: undefined,
          note: noteOutcome,
        },
        vhost: null,
        site: null,
      };
      runStages(exchange, 0);
      return exchange;
    },
    close: async () => {
      access.close();
      await route.close();
      await accessLog.close();
    },
    stageNames: selected.map((stage) => stage.name),
  };
}

/** ctx.note: one function for every request's context, not a method made with each. */
function noteOutcome(this: ExchangeContext, event: string, detail?: string): void {
  this.event = event;
  this.detail = detail ?? null;
}

/**
 * The client of this exchange has gone. Over HTTP/1 that is the connection
 * closing: a pipelined request's response has no socket at all until the
 * responses before it are done (RFC 9112 §9.3.2: answered in order), which
 * is not a client gone. An HTTP/2 response's socket is a view of its stream,
 * undefined once the stream closed.
 */
function clientGone({ req, res }: Exchange): boolean {
  if (http2Stream(req) === null) return req.socket.destroyed;
  return res.socket == null || res.socket.destroyed;
}
