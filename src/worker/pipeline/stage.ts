/**
 * What a stage is and what it sees: the types every stage module shares with
 * the ordered list in index.ts (kept here so that the list imports the stages
 * and no stage imports the list).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SiteSpec, VhostSpec } from '../../config/types.js';
import type { CidrSet } from '../../net/cidr.js';
import type { BasicAuth } from '../auth/basic.js';
import type { RequestContext, RequestHandler } from '../handlers/types.js';

/** A virtual host as the route stage chose it: its spec and its handler. */
export interface VhostRuntime {
  readonly spec: VhostSpec;
  readonly handler: RequestHandler;
}

/** What answers once the route is chosen: a route of the vhost, or the vhost itself. */
export interface SiteRuntime {
  readonly spec: SiteSpec;
  readonly handler: RequestHandler;
  /** The site's allow and deny lists, or null for none. */
  readonly access: { readonly allow: CidrSet; readonly deny: CidrSet } | null;
  readonly auth: BasicAuth | null;
}

/** One request as it travels the pipeline. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly ctx: ExchangeContext;
  /**
   * The connection's peer (../connection/peer.ts): the same for every
   * request on it, so read once, when it was accepted.
   */
  readonly peerIp: string;
  /** Chosen by the route stage. */
  vhost: VhostRuntime | null;
  /** Chosen by the route stage with the vhost: what answers the request. */
  site: SiteRuntime | null;
}

/** The handler's read-only RequestContext, as the stages fill it in. */
export type ExchangeContext = { -readonly [K in keyof RequestContext]: RequestContext[K] } & {
  event: string | null;
  detail: string | null;
  /** The request target as the client sent it (a route may rewrite req.url for its backend): what logs name. */
  readonly target: string;
  /** The user Basic authentication admitted, for the access log; null without. */
  user: string | null;
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
