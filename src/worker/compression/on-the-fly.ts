/**
 * Compression of responses whose bytes arrive as they are written: proxied
 * responses, for a site whose compression is on. Installed on a response
 * before its handler runs (`compressResponse`); the decision falls at the
 * response head, when status and headers are known:
 *
 * - never for HEAD, 1xx, 204, 206, 304, a response that already has a
 *   Content-Encoding or a Content-Range, one that says (or whose request
 *   says) `Cache-Control: no-transform` (RFC 9111 §5.2), a type not worth
 *   compressing (types.ts), or a known length under `min_length`;
 * - `Vary: Accept-Encoding` on every response that could have been
 *   compressed, whether or not this one was (RFC 9110 §12.5.5);
 * - the ETag gets the coding's suffix and becomes weak, and a request whose
 *   If-None-Match carries that suffix is passed on without it, so the
 *   upstream can still answer 304;
 * - Content-Length and Accept-Ranges go (ranges of the encoded bytes are
 *   not what the upstream would serve).
 *
 * A body of known length up to 64 KiB (most pages and API answers) is held
 * and compressed whole at its end, on the event loop: half the CPU of the
 * streaming encoder, whose every step is a round trip through the thread
 * pool. Any other body streams: what is written in one turn of the event
 * loop goes to the encoder as one piece. A response without a Content-Length (long polling, chunked
 * progress) is flushed at the end of each turn, so it reaches the client as
 * it is written, as Caddy's encoder does; a body of known length is a
 * document that ends soon and is flushed only by its end. A proxied page
 * that arrives in several reads thus costs one compression step per turn
 * instead of one per read plus a flush each (docs/benchmark.md,
 * Compression). Backpressure holds: a
 * write returns false while the encoder or the turn's pending bytes are
 * full, and 'drain' is emitted when there is room again.
 */
import type { IncomingMessage, OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { CompressionSpec, ContentCoding } from '../../config/types.js';
import { chooseCoding } from './negotiate.js';
import { compressWhole, createEncoder, encodedEtag, flushKind, isCompressible, SUFFIX } from './types.js';

const NO_BODY_STATUS = new Set([204, 206, 304]);

/** Bodies of a known length up to this are compressed whole at their end (types.ts, compressWhole). */
const WHOLE_BODY_LIMIT = 64 * 1024;

const bytesOf = (chunk: unknown, encoding: BufferEncoding | undefined): Buffer =>
  typeof chunk === 'string' ? Buffer.from(chunk, encoding) : (chunk as Buffer);

/** write() without a chunk throws, as the stream underneath would. */
function noChunk(): never {
  throw new TypeError('write() needs a chunk: a string or a Buffer');
}

/** write(chunk, [encoding], [callback]) and end([chunk], [encoding], [callback]), read as Node reads them. */
function bodyArgs(chunk: unknown, encodingOrCallback: unknown, callback: unknown): { bytes: Buffer | null; done: (() => void) | null } {
  if (typeof chunk === 'function') return { bytes: null, done: chunk as () => void };
  const done = typeof encodingOrCallback === 'function' ? encodingOrCallback : callback;
  const encoding = typeof encodingOrCallback === 'string' ? (encodingOrCallback as BufferEncoding) : undefined;
  return {
    bytes: chunk === undefined || chunk === null ? null : bytesOf(chunk, encoding),
    done: typeof done === 'function' ? (done as () => void) : null,
  };
}

function headerText(value: number | string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** Adds Accept-Encoding to Vary unless it is there (or Vary is "*"). */
export function varyOnAcceptEncoding(current: string | undefined): string {
  if (current === undefined || current.trim() === '') return 'Accept-Encoding';
  const names = current.split(',').map((name) => name.trim().toLowerCase());
  if (names.includes('*') || names.includes('accept-encoding')) return current;
  return `${current}, Accept-Encoding`;
}

const hasNoTransform = (value: string | undefined): boolean => value !== undefined && /(?:^|[\s,])no-transform(?:$|[\s,;=])/i.test(value);

/** If-None-Match with this coding's suffix taken out of every tag: what the upstream knows them as. */
function withoutSuffix(ifNoneMatch: string, coding: ContentCoding): string {
  return ifNoneMatch.replaceAll(`-${SUFFIX[coding]}"`, '"');
}

/** Whether a response with this status and these fields could be compressed (the module comment's list). */
function eligible(statusCode: number, field: (name: string) => string | undefined): boolean {
  const encoded = field('content-encoding');
  return (
    statusCode >= 200 &&
    !NO_BODY_STATUS.has(statusCode) &&
    (encoded === undefined || encoded.toLowerCase() === 'identity') &&
    field('content-range') === undefined &&
    !hasNoTransform(field('cache-control')) &&
    isCompressible(field('content-type'))
  );
}

/** The values of `name` (lower case) in a flat [name, value, ...] list, joined as getHeader would give them; undefined when absent. */
function listField(list: readonly OutgoingHttpHeader[], name: string): string | undefined {
  let found: string | undefined;
  for (let i = 0; i + 1 < list.length; i += 2) {
    if (String(list[i]).toLowerCase() !== name) continue;
    const value = headerText(list[i + 1]);
    found = found === undefined ? value : `${found}, ${value}`;
  }
  return found;
}

/** The writeHead a response had before varyOnly took its place. */
const PLAIN_WRITE_HEAD = Symbol('plainWriteHead');

type WriteHead = (this: ServerResponse, statusCode: number, ...rest: unknown[]) => ServerResponse;
type VaryOnlyResponse = ServerResponse & { [PLAIN_WRITE_HEAD]?: WriteHead };

/**
 * A request that takes none of the site's codings (no Accept-Encoding, the
 * usual case behind another proxy or for an API client; HEAD; no-transform)
 * gets the response as the upstream sent it, plus `Vary: Accept-Encoding`
 * where it could have been compressed: no body wrappers, nothing encoded.
 *
 * The writeHead put in place is one module function, not a closure made per
 * request: a new function stored on every response kept V8's scavenges
 * copying and promoting megabytes, and cost the proxy a fifth of its CPU
 * time (docs/benchmark.md, "Proxy").
 */
function varyOnly(res: ServerResponse): void {
  (res as VaryOnlyResponse)[PLAIN_WRITE_HEAD] = res.writeHead as WriteHead;
  res.writeHead = identityWriteHead as ServerResponse['writeHead'];
}

/**
 * A head given as a flat list (the proxy's) on a response with no fields
 * set yet is decided on that list and passed on as one, so no field goes
 * through setHeader; any other head goes into the header map first.
 */
function identityWriteHead(
  this: VaryOnlyResponse,
  statusCode: number,
  reasonOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
  maybeHeaders?: OutgoingHttpHeaders | OutgoingHttpHeader[],
): ServerResponse {
  const writeHead = this[PLAIN_WRITE_HEAD]!;
  this.writeHead = writeHead as ServerResponse['writeHead'];
  const reason = typeof reasonOrHeaders === 'string' ? reasonOrHeaders : undefined;
  const given = typeof reasonOrHeaders === 'string' ? maybeHeaders : reasonOrHeaders;
  const head = (fields?: OutgoingHttpHeaders | OutgoingHttpHeader[]): ServerResponse =>
    reason === undefined ? writeHead.call(this, statusCode, fields) : writeHead.call(this, statusCode, reason, fields);
  if (Array.isArray(given) && this.getHeaderNames().length === 0) {
    if (!eligible(statusCode, (name) => listField(given, name))) return head(given);
    const list: OutgoingHttpHeader[] = [];
    for (let i = 0; i + 1 < given.length; i += 2) if (String(given[i]).toLowerCase() !== 'vary') list.push(given[i]!, given[i + 1]!);
    list.push('Vary', varyOnAcceptEncoding(listField(given, 'vary')));
    return head(list);
  }
  if (given !== undefined) setFields(this, given);
  if (eligible(statusCode, (name) => headerText(this.getHeader(name)))) {
    this.setHeader('Vary', varyOnAcceptEncoding(headerText(this.getHeader('vary'))));
  }
  return head();
}

/** A head's fields into the response's own header map, where they can be read and changed alike. */
function setFields(res: ServerResponse, given: OutgoingHttpHeaders | OutgoingHttpHeader[]): void {
  if (Array.isArray(given)) {
    const grouped = new Map<string, string[]>();
    for (let i = 0; i + 1 < given.length; i += 2) {
      const name = String(given[i]).toLowerCase();
      grouped.set(name, [...(grouped.get(name) ?? []), String(given[i + 1])]);
    }
    for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? values[0]! : values);
  } else {
    for (const [name, value] of Object.entries(given)) if (value !== undefined) res.setHeader(name, value);
  }
}

/** Prepare `res` to be compressed on the fly, as its head decides (see above). */
export function compressResponse(req: IncomingMessage, res: ServerResponse, policy: CompressionSpec): void {
  if (!policy.enabled) return;
  const coding =
    req.method === 'HEAD' || hasNoTransform(headerText(req.headers['cache-control']))
      ? null
      : chooseCoding(req.headers['accept-encoding'], policy.algorithms);
  if (coding === null) {
    varyOnly(res);
    return;
  }
  const ifNoneMatch = req.headers['if-none-match'];
  // The client validates the coded form it holds: the upstream knows the tag without the suffix.
  const revalidatesCoded = ifNoneMatch !== undefined && withoutSuffix(ifNoneMatch, coding) !== ifNoneMatch;
  if (revalidatesCoded) req.headers['if-none-match'] = withoutSuffix(ifNoneMatch, coding);

  const writeHead = res.writeHead;
  const originalWrite = res.write;
  const originalEnd = res.end;
  // A body written before an explicit head (an error page's end(body), HTTP/2's
  // implicit head) first decides the head, so the body goes where it says.
  const decideWrite = function decideWrite(this: ServerResponse, ...args: unknown[]): boolean {
    if (!res.headersSent) res.writeHead(res.statusCode);
    if (res.write === decideWrite) res.write = originalWrite;
    return (res.write as (...a: unknown[]) => boolean).apply(res, args);
  } as ServerResponse['write'];
  const decideEnd = function decideEnd(this: ServerResponse, ...args: unknown[]): ServerResponse {
    if (!res.headersSent) res.writeHead(res.statusCode);
    if (res.end === decideEnd) res.end = originalEnd;
    return (res.end as (...a: unknown[]) => ServerResponse).apply(res, args);
  } as ServerResponse['end'];
  res.write = decideWrite;
  res.end = decideEnd;
  const restoreBody = (): void => {
    if (res.write === decideWrite) res.write = originalWrite;
    if (res.end === decideEnd) res.end = originalEnd;
  };
  res.writeHead = function compressedWriteHead(
    this: ServerResponse,
    statusCode: number,
    reasonOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
    maybeHeaders?: OutgoingHttpHeaders | OutgoingHttpHeader[],
  ): ServerResponse {
    res.writeHead = writeHead;
    const reason = typeof reasonOrHeaders === 'string' ? reasonOrHeaders : undefined;
    const given = typeof reasonOrHeaders === 'string' ? maybeHeaders : reasonOrHeaders;
    if (given !== undefined) setFields(res, given);
    const compressible = eligible(statusCode, (name) => headerText(res.getHeader(name)));
    const head = writeHead as (this: ServerResponse, status: number, reason?: string) => ServerResponse;
    if (!compressible) restoreBody();
    const etag = headerText(res.getHeader('etag'));
    if (statusCode === 304 && revalidatesCoded && etag !== undefined) {
      // The upstream confirmed the representation: the client's copy is the coded one.
      res.setHeader('ETag', encodedEtag(etag, coding));
      res.setHeader('Vary', varyOnAcceptEncoding(headerText(res.getHeader('vary'))));
    }
    if (!compressible) return reason === undefined ? head.call(this, statusCode) : head.call(this, statusCode, reason);
    res.setHeader('Vary', varyOnAcceptEncoding(headerText(res.getHeader('vary'))));
    const length = headerText(res.getHeader('content-length'));
    if (!(length !== undefined && Number(length) < policy.minLengthBytes)) encode(res, coding, originalWrite, originalEnd);
    else restoreBody();
    return reason === undefined ? head.call(this, statusCode) : head.call(this, statusCode, reason);
  } as ServerResponse['writeHead'];
}

/** From now on, what is written to `res` goes through the encoder first. */
function encode(
  res: ServerResponse,
  coding: ContentCoding,
  originalWrite: ServerResponse['write'],
  originalEnd: ServerResponse['end'],
): void {
  const length = Number(headerText(res.getHeader('content-length')));
  const knownLength = Number.isSafeInteger(length) && length > 0;
  res.removeHeader('content-length');
  res.removeHeader('accept-ranges');
  res.setHeader('Content-Encoding', coding);
  const etag = headerText(res.getHeader('etag'));
  if (etag !== undefined) res.setHeader('ETag', encodedEtag(etag, coding));

  const write = originalWrite.bind(res) as (chunk: Buffer) => boolean;
  const end = originalEnd.bind(res) as () => ServerResponse;
  if (knownLength && length <= WHOLE_BODY_LIMIT) compressAtEnd(res, coding, length, write, end);
  else streamThrough(res, coding, knownLength ? length : null, write, end);
}

/**
 * A body of known, small length is held until its end, then compressed at
 * once and written in one piece. More bytes than its Content-Length said is
 * a broken response, ended as Node ends one.
 */
function compressAtEnd(
  res: ServerResponse,
  coding: ContentCoding,
  length: number,
  write: (chunk: Buffer) => boolean,
  end: () => ServerResponse,
): void {
  const pieces: Buffer[] = [];
  let held = 0;
  const callbacks: (() => void)[] = [];
  const hold = (bytes: Buffer): boolean => {
    held += bytes.length;
    if (held > length) {
      res.destroy(new Error(`the body is longer than its Content-Length (${length})`));
      return false;
    }
    pieces.push(bytes);
    return true;
  };
  res.write = function heldWrite(chunk: unknown, encodingOrCallback?: unknown, callback?: unknown): boolean {
    const { bytes, done } = bodyArgs(chunk, encodingOrCallback, callback);
    if (done !== null) callbacks.push(done);
    return hold(bytes ?? noChunk());
  } as ServerResponse['write'];
  res.end = function heldEnd(chunk?: unknown, encodingOrCallback?: unknown, callback?: unknown): ServerResponse {
    const { bytes, done } = bodyArgs(chunk, encodingOrCallback, callback);
    if (bytes !== null) hold(bytes);
    for (const waiting of callbacks) res.once('finish', waiting);
    if (done !== null) res.once('finish', done);
    if (res.destroyed) return res;
    write(compressWhole(coding, Buffer.concat(pieces, held)));
    return end();
  } as ServerResponse['end'];
}

/** Every other body goes through a streaming encoder as it is written. */
function streamThrough(
  res: ServerResponse,
  coding: ContentCoding,
  length: number | null,
  write: (chunk: Buffer) => boolean,
  end: () => ServerResponse,
): void {
  const encoder = createEncoder(coding, 'stream', length ?? undefined);
  const flush = flushKind(coding);
  // This turn's writes, and the callbacks that wait for them to be flushed.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let callbacks: (() => void)[] = [];
  let turn: NodeJS.Immediate | null = null;
  let refused = false;
  encoder.on('data', (chunk: Buffer) => {
    if (!write(chunk)) encoder.pause();
  });
  res.on('drain', () => encoder.resume());
  // The encoder's input has room again: a writer that stopped on false waits for the response's 'drain'.
  encoder.on('drain', () => res.emit('drain'));
  encoder.once('end', () => end());
  encoder.once('error', () => res.destroy());
  res.once('close', () => {
    if (turn !== null) clearImmediate(turn);
    encoder.destroy();
  });

  const take = (): Buffer => {
    const piece = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return piece;
  };
  // A body of a known length is a document that ends soon: its pieces are not flushed on their own.
  const streaming = length === null;
  const endOfTurn = (): void => {
    turn = null;
    const waiting = callbacks;
    callbacks = [];
    const written = (): void => {
      for (const callback of waiting) callback();
    };
    const room = streaming ? encoder.write(take()) : encoder.write(take(), written);
    if (streaming) (encoder as unknown as { flush(kind: number, cb: () => void): void }).flush(flush, written);
    // A writer told to wait for the pending bytes, not for the encoder, is told there is room.
    if (refused && room) {
      refused = false;
      res.emit('drain');
    }
  };

  const add = (bytes: Buffer): void => {
    pending.push(bytes);
    pendingBytes += bytes.length;
  };

  res.write = function compressedWrite(chunk: unknown, encodingOrCallback?: unknown, callback?: unknown): boolean {
    const { bytes, done } = bodyArgs(chunk, encodingOrCallback, callback);
    add(bytes ?? noChunk());
    if (done !== null) callbacks.push(done);
    turn ??= setImmediate(endOfTurn);
    const room = encoder.writableLength + pendingBytes < encoder.writableHighWaterMark;
    if (!room) refused = true;
    return room;
  } as ServerResponse['write'];
  res.end = function compressedEnd(chunk?: unknown, encodingOrCallback?: unknown, callback?: unknown): ServerResponse {
    const { bytes, done } = bodyArgs(chunk, encodingOrCallback, callback);
    if (bytes !== null) add(bytes);
    if (turn !== null) {
      clearImmediate(turn);
      turn = null;
    }
    if (pendingBytes > 0) encoder.write(take());
    // Ending flushes everything: the turn's write callbacks run when the response is done.
    for (const waiting of callbacks) res.once('finish', waiting);
    callbacks = [];
    if (done !== null) res.once('finish', done);
    encoder.end();
    return res;
  } as ServerResponse['end'];
}
