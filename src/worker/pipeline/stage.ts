/**
 * What a stage is and what it sees: the types every stage module shares with
 * the ordered list in index.ts (kept here so that the list imports the stages
 * and no stage imports the list).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { VhostSpec } from '../../config/types.js';
import type { RequestContext, RequestHandler } from '../handlers/types.js';

/** A virtual host as the route stage chose it: its spec and its handler. */
export interface VhostRuntime {
  readonly spec: VhostSpec;
  readonly handler: RequestHandler;
}

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
  /**
   * Runs in list order before the handler; throw HttpError to reject. A
   * stage that must wait (for the master) returns a promise; the next stage
   * runs when it settles.
   */
  onRequest?(exchange: Exchange): void | Promise<void> | 'answered';
}
