/**
 * The request pipeline, in the order every request meets it. Each stage is
 * one module; a stage rejects by throwing an HttpError from the catalogue
 * (errors.ts), and the first rejection answers (docs/lifecycle.md shows the
 * status each stage answers with).
 *
 * Connection-level stages (PROXY protocol, access lists at accept) run on
 * the server's 'connection' event, before any request exists: see server.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { CompiledConfig, Protocol } from '../../config/types.js';
import { HttpError, sendError } from '../errors.js';
import type { RequestContext } from '../handlers/types.js';
import { accessLogStage } from './access-log.js';
import { routeStage, type VhostRuntime } from './route.js';

/** One request as it travels the pipeline. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly ctx: ExchangeContext;
  /** Chosen by the route stage. */
  vhost: VhostRuntime | null;
}

/** The handler's read-only RequestContext, as the stages fill it in. */
export type ExchangeContext = { -readonly [K in keyof RequestContext]: RequestContext[K] } & {
  event: string | null;
  detail: string | null;
};

export interface Stage {
  readonly name: string;
  /** Runs in list order before the handler; throw HttpError to reject. */
  onRequest?(exchange: Exchange): void;
}

export interface Pipeline {
  handle(req: IncomingMessage, res: ServerResponse, protocol: Protocol): void;
  close(): Promise<void>;
}

export function createPipeline(config: CompiledConfig, log: Logger): Pipeline {
  const route = routeStage(config);
  // The order is the design: read it top to bottom.
  // Security headers are not a stage that could be skipped: the response
  // class of every server adds them at writeHead (response-headers.ts).
  const stages: Stage[] = [
    accessLogStage(config, log), // one line per finished request, whatever stage answered
    route, //                        Host -> vhost (421 when nothing matches)
  ];
  const requestStages = stages.filter((stage) => stage.onRequest !== undefined);

  return {
    handle(req, res, protocol) {
      const exchange: Exchange = {
        req,
        res,
        ctx: {
          clientIp: clientAddress(req),
          protocol,
          host: '',
          event: null,
          detail: null,
          note(event, detail) {
            this.event = event;
            this.detail = detail ?? null;
          },
        },
        vhost: null,
      };
      try {
        for (const stage of requestStages) stage.onRequest!(exchange);
        exchange.vhost!.handler.handle(req, res, exchange.ctx);
      } catch (error) {
        const rejection = error instanceof HttpError ? error : new HttpError('INTERNAL', String(error));
        if (rejection.code === 'INTERNAL') log.error({ err: error }, 'request handling failed');
        exchange.ctx.note(rejection.spec.event, rejection.detail);
        sendError(res, rejection.code);
      }
    },
    close: () => route.close(),
  };
}

/** The peer's address, with IPv4-mapped IPv6 ("::ffff:1.2.3.4") written as IPv4. */
function clientAddress(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
