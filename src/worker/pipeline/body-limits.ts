/**
 * Body limits and slow-body defence: max_body_size (max_multipart_size for
 * multipart/form-data), max_json_depth, max_form_fields, body_read_timeout
 * and min_data_rate ([security.limits], [security.timeouts]).
 *
 * A declared Content-Length over the limit is refused before a byte of the
 * body is read. A chunked body is counted as the parser hands it over: the
 * count sits on the request's own push(), where every body byte passes
 * whoever consumes it (the proxy streams `req` to the upstream), so no extra
 * stream or listener changes how the body flows. Over the limit mid-stream,
 * the answer is 413 if nothing was sent yet, else the connection is cut; the
 * body's framing is abandoned either way, so the connection closes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledConfig } from '../../config/types.js';
import { HttpError, sendError, type ErrorCode } from '../errors.js';
import { formFieldsInspector, jsonDepthInspector, multipartBoundary, multipartPartsInspector, type BodyInspector } from './body-shape.js';
import type { Exchange, Stage } from './index.js';

/** How often a body in progress is checked against the minimum data rate. */
const RATE_CHECK_INTERVAL_MS = 1000;

export function bodyLimitsStage(config: CompiledConfig, reject: (exchange: Exchange, error: HttpError) => void): Stage {
  const { maxBodyBytes, maxMultipartBytes, maxJsonDepth, maxFormFields } = config.limits;
  const { bodyReadTimeoutMs, minDataRateBytesPerSec } = config.timeouts;

  return {
    name: 'body-limits',
    onRequest(exchange) {
      const { req } = exchange;
      const declared = req.headers['content-length'];
      const chunked = req.headers['transfer-encoding'] !== undefined;
      if (declared === undefined && !chunked) return;
      const contentType = req.headers['content-type'] ?? '';
      const mediaType = contentType.split(';', 1)[0]!.trim().toLowerCase();
      // File uploads get max_multipart_size; every other body max_body_size.
      const multipart = mediaType === 'multipart/form-data';
      const maxBytes = multipart ? maxMultipartBytes : maxBodyBytes;
      if (declared !== undefined) {
        // Digits only (anti-smuggling checked); Number is exact below 2^53.
        const length = Number(declared);
        if (length > maxBytes) throw new HttpError('BODY_TOO_LARGE', `Content-Length ${length}`);
        if (length === 0) return;
      }
      let inspector: BodyInspector | null = null;
      if (multipart) {
        const boundary = multipartBoundary(contentType);
        if (boundary === null) throw new HttpError('BAD_MULTIPART', 'no boundary');
        inspector = multipartPartsInspector(boundary, maxFormFields);
      } else if (mediaType === 'application/json' || mediaType.endsWith('+json')) {
        inspector = jsonDepthInspector(maxJsonDepth);
      } else if (mediaType === 'application/x-www-form-urlencoded') {
        inspector = formFieldsInspector(maxFormFields);
      }
      watchBody(exchange, chunked ? maxBytes : Infinity, inspector, bodyReadTimeoutMs, minDataRateBytesPerSec, reject);
    },
  };
}

function watchBody(
  exchange: Exchange,
  maxBytes: number,
  inspector: BodyInspector | null,
  timeoutMs: number,
  minBytesPerSec: number,
  reject: (exchange: Exchange, error: HttpError) => void,
): void {
  const req: IncomingMessage = exchange.req;
  const started = performance.now();
  let received = 0;
  let finished = false;
  /** After a rejection the rest of the body is dropped, not handed to the handler. */
  let dropping = false;
  const stop = (): void => {
    finished = true;
    clearTimeout(deadline);
    clearInterval(rateCheck);
  };
  const fail = (code: ErrorCode, detail: string): void => {
    if (finished) return;
    stop();
    dropping = true;
    reject(exchange, new HttpError(code, detail));
  };

  const push = req.push;
  req.push = function countingPush(this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk !== null) {
      if (dropping) return false;
      received += (chunk as Buffer).length;
      if (received > maxBytes) {
        fail('BODY_TOO_LARGE', `body passed ${maxBytes} bytes`);
        return false;
      }
      const problem = inspector?.feed(chunk as Buffer) ?? null;
      if (problem !== null) {
        fail(problem.code, problem.detail);
        return false;
      }
    }
    return push.call(this, chunk, encoding);
  };
  const deadline = setTimeout(() => fail('BODY_TIMEOUT', `body not complete after ${timeoutMs} ms`), timeoutMs);
  const rateCheck = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    // The first second is free: TCP slow start and a client's own think time.
    if (seconds > 1 && received / seconds < minBytesPerSec && !req.complete) {
      fail('SLOW_CLIENT', `${Math.round(received / seconds)} B/s after ${seconds.toFixed(1)} s`);
    }
  }, RATE_CHECK_INTERVAL_MS);
  deadline.unref();
  rateCheck.unref();
  req.once('end', stop);
  req.once('close', stop);
}

/**
 * Answer a rejection raised after the handler started: the error answer when
 * nothing was sent yet, else cut the connection. Either way the connection
 * closes: the rest of the body would be read as the next request.
 */
export function rejectInFlight(res: ServerResponse, code: ErrorCode): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // Every catalogue code used here closes: Node ends the connection after this answer.
  sendError(res, code);
}
