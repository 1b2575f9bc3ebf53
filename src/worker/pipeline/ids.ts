/**
 * Intrusion detection ([security.ids]): the engine (src/worker/ids/) looks
 * at the decoded path, the query parameters, every header (each by its
 * grammar), and the first MAX_BODY_BYTES of a body whose type it can read;
 * custom rules look at all of these, the body too.
 *
 * Every match is counted (metrics), audited, and scored against the client
 * by the master (severity points, decaying; alert_threshold raises an
 * audit alert, block_threshold bans). A match of a rule whose action is
 * `block` (every built-in rule) answers 403 and closes.
 *
 * The body is judged before anyone downstream reads it: body-limits holds
 * back the body's first bytes (up to MAX_BODY_BYTES, or all of a smaller
 * body) and shows them to the gate below; an upstream sees none of a body
 * the IDS refuses.
 */
import type { IncomingMessage } from 'node:http';
import type { IdsSpec } from '../../config/types.js';
import { clientKey } from '../../net/cidr.js';
import { HttpError } from '../errors.js';
import { createIdsEngine, MAX_BODY_BYTES, SEVERITY_SCORE, type IdsMatch } from '../ids/index.js';
import type { MasterPort } from '../master-link.js';
import type { WorkerMetrics } from '../metrics.js';
import type { Exchange, Stage } from './stage.js';

/** What body-limits asks before it holds back a body's first bytes for judgement. */
export interface BodyGate {
  /** Bytes held at most: the gate judges the body's first maxBytes. */
  readonly maxBytes: number;
  /** Whether this request's body is worth holding (a type the engine reads). */
  wants(req: IncomingMessage): boolean;
  /** The rejection for this body prefix, or null to let the body through. */
  judge(exchange: Exchange, body: Buffer): HttpError | null;
}

/** Bodies that are data, not text a person or an interpreter would read: not inspected. */
const OPAQUE_TYPE = /^(image|audio|video|font)\/|^application\/(octet-stream|zip|gzip|x-gzip|pdf|wasm|x-tar|x-7z-compressed|vnd\.)/;

export function idsStage(
  spec: IdsSpec,
  master: MasterPort,
  metrics: WorkerMetrics,
  /** Audits one match (the pipeline's audit, which has the request's context). */
  auditMatch: (exchange: Exchange, match: IdsMatch) => void,
): { stage: Stage; gate: BodyGate } {
  const engine = createIdsEngine(spec.rules);

  /** Reports every match; returns the rejection when one of them blocks. */
  const weigh = (exchange: Exchange, matches: readonly IdsMatch[]): HttpError | null => {
    if (matches.length === 0) return null;
    const ip = clientKey(exchange.ctx.clientIp);
    let blocking: IdsMatch | null = null;
    for (const match of matches) {
      metrics.idsMatch(match.rule);
      if (ip !== null) master.idsMatch(ip, match.rule, SEVERITY_SCORE[match.severity]);
      auditMatch(exchange, match);
      if (match.action === 'block') blocking ??= match;
    }
    return blocking === null ? null : new HttpError('IDS_BLOCKED', `${blocking.rule} in ${blocking.location}`);
  };

  return {
    stage: {
      name: 'ids',
      onRequest(exchange) {
        const rejection = weigh(exchange, engine.inspectRequest(exchange.req.url ?? '', exchange.req.headers));
        if (rejection !== null) throw rejection;
      },
    },
    gate: {
      maxBytes: MAX_BODY_BYTES,
      wants(req) {
        const type = (req.headers['content-type'] ?? '').toLowerCase();
        return !OPAQUE_TYPE.test(type);
      },
      judge(exchange, body) {
        return weigh(exchange, engine.inspectBody(body, exchange.req.headers['content-type']));
      },
    },
  };
}
