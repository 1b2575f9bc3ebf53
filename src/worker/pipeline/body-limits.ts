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
 *
 * An HTTP/2 body (DATA frames) is counted the same way, whether or not it
 * declared a Content-Length.
 *
 * max_chunk_size ([security.anti_smuggling]): Node's parser (llhttp) checks
 * chunk framing but tells JavaScript neither chunk sizes nor boundaries; it
 * hands over the data of each chunk, one piece per chunk per read. Pieces of
 * one read are always separated by framing, so they belong to different
 * chunks. The first piece of a read continues the previous read's chunk
 * exactly when the read begins with chunk data, which the parser's current
 * read buffer shows. Counted this way, a chunk is never measured shorter
 * than it is: if framing bytes happened to equal the piece, the count errs
 * long, never short.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledConfig } from '../../config/types.js';
import { HttpError, sendError, type ErrorCode } from '../errors.js';
import { formFieldsInspector, jsonDepthInspector, multipartBoundary, multipartPartsInspector, type BodyInspector } from './body-shape.js';
import { hasBodyWithoutLength, http2Stream } from '../http2-request.js';
import type { BodyGate } from './ids.js';
import { isWebSocketRequest } from '../websocket/handshake.js';
import type { Exchange, Stage } from './stage.js';

/** How often a body in progress is checked against the minimum data rate. */
const RATE_CHECK_INTERVAL_MS = 1000;

export function bodyLimitsStage(
  config: CompiledConfig,
  reject: (exchange: Exchange, error: HttpError) => void,
  gate: BodyGate | null = null,
): Stage {
  const { maxBodyBytes, maxMultipartBytes, maxJsonDepth, maxFormFields } = config.limits;
  const { bodyReadTimeoutMs, minDataRateBytesPerSec } = config.timeouts;
  const { maxChunkBytes } = config.limits;

  return {
    name: 'body-limits',
    onRequest(exchange) {
      const { req } = exchange;
      // A WebSocket handshake has no body (the upgrade stage refused one); over HTTP/2 the
      // stream's DATA frames are the tunnel's, held to its own timeouts (websocket/tunnel.ts).
      if (isWebSocketRequest(req)) return;
      const declared = req.headers['content-length'];
      const chunked = req.headers['transfer-encoding'] !== undefined;
      const http2 = http2Stream(req) !== null;
      const streamed = chunked || hasBodyWithoutLength(req);
      if (declared === undefined && !streamed) return;
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
      const chunkSizer = chunked ? chunkSizeMeter(exchange.req, maxChunkBytes) : null;
      const held = gate?.wants(exchange.req) ? gate : null;
      // A declared HTTP/1 length is held to by the parser; every other body is counted as it streams.
      watchBody(
        exchange,
        streamed || http2 ? maxBytes : Infinity,
        inspector,
        chunkSizer,
        held,
        bodyReadTimeoutMs,
        minDataRateBytesPerSec,
        reject,
      );
    },
  };
}

function watchBody(
  exchange: Exchange,
  maxBytes: number,
  inspector: BodyInspector | null,
  chunkSizer: ((piece: Buffer) => string | null) | null,
  gate: BodyGate | null,
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
  const fail = (code: ErrorCode | HttpError, detail = ''): void => {
    if (finished) return;
    stop();
    dropping = true;
    reject(exchange, code instanceof HttpError ? code : new HttpError(code, detail));
  };

  // The gate's hold: the body's first bytes wait here, counted and checked
  // like any others, until the gate has judged them; then they go on in order.
  let holding = gate !== null;
  let held: Buffer[] = [];
  let heldBytes = 0;
  /** Judges what is held and passes it on; false when the body was refused. */
  const release = (stream: IncomingMessage): boolean => {
    holding = false;
    const body = held.length === 1 ? held[0]! : Buffer.concat(held);
    held = [];
    // Already answered (a stage refused the head): nothing goes on, nothing more is said.
    if (exchange.res.headersSent) {
      dropping = true;
      return false;
    }
    const rejection = gate!.judge(exchange, body);
    if (rejection !== null) {
      fail(rejection);
      return false;
    }
    if (body.length > 0) push.call(stream, body);
    return true;
  };

  const push = req.push;
  req.push = function countingPush(this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) {
      if (dropping || (holding && !release(this))) return false;
    } else {
      if (dropping) return false;
      received += (chunk as Buffer).length;
      if (received > maxBytes) {
        fail('BODY_TOO_LARGE', `body passed ${maxBytes} bytes`);
        return false;
      }
      const oversized = chunkSizer?.(chunk as Buffer) ?? null;
      if (oversized !== null) {
        fail('CHUNK_TOO_LARGE', oversized);
        return false;
      }
      const problem = inspector?.feed(chunk as Buffer) ?? null;
      if (problem !== null) {
        fail(problem.code, problem.detail);
        return false;
      }
      if (holding) {
        held.push(chunk as Buffer);
        heldBytes += (chunk as Buffer).length;
        // Keep the parser reading until the gate has seen enough.
        return heldBytes < gate!.maxBytes ? true : release(this);
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

/** The parts of Node's HTTP parser binding this file relies on (internal, stable since Node 0.x; pinned by a test). */
interface ParserBinding {
  getCurrentBuffer(): Buffer;
}

/**
 * Measures the chunks of one chunked body as their pieces arrive (see the
 * file comment); returns why the body is refused once a chunk passes
 * maxChunkBytes, else null.
 */
function chunkSizeMeter(req: IncomingMessage, maxChunkBytes: number): (piece: Buffer) => string | null {
  const socket = req.socket;
  let chunkBytes = 0;
  let readMark = -1;
  return (piece) => {
    const bytesRead = socket.bytesRead;
    let continues = false;
    if (bytesRead !== readMark) {
      // First piece of a new read: the same chunk only if the read starts with this very data.
      const parser = (socket as unknown as { parser?: ParserBinding | null }).parser;
      const read = readMark === -1 ? null : (parser?.getCurrentBuffer() ?? null);
      // Without the parser's buffer, assume the chunk goes on: err long, never short.
      continues =
        readMark !== -1 && (read === null || (read.length >= piece.length && read.compare(piece, 0, piece.length, 0, piece.length) === 0));
      readMark = bytesRead;
    }
    chunkBytes = continues ? chunkBytes + piece.length : piece.length;
    return chunkBytes > maxChunkBytes ? `chunk passed ${maxChunkBytes} bytes` : null;
  };
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
