import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Protocol } from '../../config/types.js';

/** What the pipeline knows about a request by the time a handler runs. */
export interface RequestContext {
  /** The client's address as resolved by the pipeline (PROXY protocol, forwarded headers). */
  readonly clientIp: string;
  /** Scheme the client used to reach us. */
  readonly protocol: Protocol;
  /** Host header, lower-cased, without port. */
  readonly host: string;
  /**
   * Where the request came from: the TCP peer, or the PROXY protocol source,
   * canonical; `trustedProxy` when it is a [security.forwarded] trusted proxy
   * (its X-Forwarded-For hops are kept upstream). Set by the client-ip
   * stage; absent, the client is its own peer.
   */
  readonly peer?: { readonly ip: string; readonly trustedProxy: boolean };
  /** Record the outcome for the access/audit log (error code or upstream detail). */
  note(event: string, detail?: string): void;
}

/** A handler answers one request; it must always end `res` (or destroy it). */
export interface RequestHandler {
  handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): void;
  /** Release pools and timers when the worker drains. */
  close?(): Promise<void>;
}
