/**
 * The response to a bodyless HTTP/2 request (http2-request.ts): what the
 * pipeline and the handlers use of a ServerResponse, written straight to
 * the stream (Http2Stream.respond, write, end) under the same header policy
 * as every other response (response-headers.ts: the security headers, the
 * removed names, no connection-specific field).
 *
 * Node's compatibility response hangs five listeners on every stream and,
 * with its request, makes a Readable and eight more per request; a bare
 * Node server answering through that layer spends a quarter more CPU per
 * request than on the core API (docs/benchmark.md). This one hangs two (the
 * stream's 'close', which also runs the session's bookkeeping, and an
 * 'error' listener, which the compatibility layer also adds so that a reset
 * stream cannot throw) and adds 'drain' and 'wantTrailers' only when a
 * response needs them. Its events are the compatibility layer's: 'drain'
 * from the stream, 'finish' then 'close' when the stream closes, and the
 * request's 'close' with them.
 *
 * Over HTTP/1 a body on a HEAD answer, or on a 204 or 304, is dropped by
 * Node; here likewise (respond() has already ended such a stream), where the
 * compatibility layer would reset the stream for writing after its end.
 * Trailers (addTrailers) go to a client that said "TE: trailers" (the only
 * TE an HTTP/2 request may carry, RFC 9113 §8.2.2), and to no other: only
 * then does respond() ask for them, which costs a step per stream.
 */
import type { OutgoingHttpHeader, OutgoingHttpHeaders } from 'node:http';
import type { ServerHttp2Stream, ServerStreamResponseOptions } from 'node:http2';
import type { Socket } from 'node:net';
import { Stream } from 'node:stream';
import type { HeaderPolicy } from '../config/types.js';
import { nodeHttp } from '../node-builtins.js';
import type { BodylessHttp2Request } from './http2-request.js';
import { respondWithBlock } from './http2-respond.js';
import { ANSWER, CONNECTION_SPECIFIC, http2HeadBlock, http2HeadFields, POLICY, policyWriter } from './response-headers.js';

const RESPONSE = Symbol('response');
type ResponseStream = ServerHttp2Stream & { [RESPONSE]?: { streamEvent(event: StreamEvent): void; readonly bytesHanded: number } };
type StreamEvent = 'close' | 'drain' | 'wantTrailers';
type HeaderValue = OutgoingHttpHeader;
type FieldList = (string | number | readonly string[])[];

/** respond() options, one object for each combination (Node only reads them). sendDate is Node's own option, which its typing leaves out. */
const RESPOND_OPTIONS: readonly ServerStreamResponseOptions[] = Array.from(
  { length: 8 },
  (_, bits) =>
    Object.freeze({
      endStream: (bits & 1) !== 0,
      waitForTrailers: (bits & 2) !== 0,
      sendDate: (bits & 4) !== 0,
    }) as ServerStreamResponseOptions,
);
const respondOptions = (endStream: boolean, waitForTrailers: boolean, sendDate: boolean): ServerStreamResponseOptions =>
  RESPOND_OPTIONS[(endStream ? 1 : 0) | (waitForTrailers ? 2 : 0) | (sendDate ? 4 : 0)]!;

function codedError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Errors of a reset stream: the compatibility layer swallows them too; the response's 'close' reports the end. */
function ignoreStreamError(): void {}

function streamDrained(this: ResponseStream): void {
  this[RESPONSE]?.streamEvent('drain');
}
function streamWantsTrailers(this: ResponseStream): void {
  this[RESPONSE]?.streamEvent('wantTrailers');
}

/**
 * The body bytes of a stream's answer that have left its queue (handed to
 * the stream, less what is still queued: they only grow while the answer
 * moves), or null for a stream this class does not answer.
 */
export function bytesSent(stream: ServerHttp2Stream): number | null {
  const response = (stream as ResponseStream)[RESPONSE];
  return response === undefined ? null : response.bytesHanded - stream.bufferSize;
}

function byteLength(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return chunk instanceof Uint8Array ? chunk.byteLength : 0;
}

export type BodylessHttp2ResponseClass = new (stream: ServerHttp2Stream, req: BodylessHttp2Request) => Stream;

/**
 * The response class of one HTTPS listener's bodyless HTTP/2 requests,
 * under the server's header policy until a vhost's replaces it.
 * `afterClose` runs when a stream closes, after the response's own events:
 * the session's bookkeeping, in the one 'close' listener a stream gets.
 */
export function bodylessHttp2ResponseClass(
  serverPolicy: HeaderPolicy,
  afterClose?: (this: ServerHttp2Stream) => void,
): BodylessHttp2ResponseClass {
  const { write: writeUnderPolicy, preparedHttp2Head } = policyWriter(serverPolicy, 'https', CONNECTION_SPECIFIC);

  function streamClosed(this: ResponseStream): void {
    this[RESPONSE]?.streamEvent('close');
    // Node keeps a closed stream alive through young-generation collections
    // (its native handle was written to: handle.owner), so whatever the
    // stream still points to is copied and promoted with it. Let go, and the
    // response, its request, the exchange and the header fields die young.
    this[RESPONSE] = undefined;
    afterClose?.call(this);
  }

  return class BodylessHttp2Response extends Stream {
    [POLICY]?: HeaderPolicy;
    readonly writable = true;
    /** Set by the server and the error answers for HTTP/1; an HTTP/2 stream never keeps a connection open or closes it. */
    shouldKeepAlive = true;
    #status = 200;
    #headers: Record<string, HeaderValue> | null = null;
    #trailers: Record<string, HeaderValue> | null = null;
    #sendDate = true;
    #ending = false;
    #closed = false;
    #destroyCalled = false;
    #drainHooked = false;
    /** Body bytes written to the stream so far (bytesSent). */
    bytesHanded = 0;

    constructor(
      readonly stream: ServerHttp2Stream,
      readonly req: BodylessHttp2Request,
    ) {
      super();
      (stream as ResponseStream)[RESPONSE] = this;
      stream.on('close', streamClosed);
      stream.on('error', ignoreStreamError);
    }

    streamEvent(event: StreamEvent): void {
      if (event === 'drain') this.emit('drain');
      else if (event === 'wantTrailers') this.stream.sendTrailers(this.#trailers ?? {});
      else this.#close();
    }

    #close(): void {
      if (this.#closed) return;
      this.#closed = true;
      this.emit('finish');
      this.emit('close');
      this.req.emit('close');
    }

    get statusCode(): number {
      return this.#status;
    }

    set statusCode(code: number) {
      code |= 0;
      if (code < 200 || code > 599) throw codedError('ERR_HTTP2_STATUS_INVALID', `Invalid status code: ${code}`);
      this.#status = code;
    }

    /** HTTP/2 has no reason phrase (RFC 9113 §8.3.2). */
    get statusMessage(): string {
      return '';
    }

    set statusMessage(_message: string) {}

    get sendDate(): boolean {
      return this.#sendDate;
    }

    set sendDate(send: boolean) {
      this.#sendDate = Boolean(send);
    }

    get headersSent(): boolean {
      return this.stream.headersSent;
    }

    get destroyed(): boolean {
      return this.stream.destroyed;
    }

    /** The connection, while this stream is open: a view for its peer and TLS state, as the compatibility layer's. */
    get socket(): Socket | undefined {
      return this.#closed || this.stream.destroyed ? undefined : this.req.socket;
    }

    get connection(): Socket | undefined {
      return this.socket;
    }

    get writableEnded(): boolean {
      return this.#ending;
    }

    get finished(): boolean {
      return this.#ending;
    }

    get writableFinished(): boolean {
      return this.stream.writableFinished;
    }

    get writableNeedDrain(): boolean {
      return this.stream.writableNeedDrain;
    }

    get writableLength(): number {
      return this.stream.writableLength;
    }

    get writableHighWaterMark(): number {
      return this.stream.writableHighWaterMark;
    }

    get writableCorked(): number {
      return this.stream.writableCorked;
    }

    #refuseIfSent(): void {
      if (this.stream.headersSent) throw codedError('ERR_HTTP2_HEADERS_SENT', 'Response has already been initiated.');
    }

    setHeader(name: string, value: HeaderValue): this {
      this.#refuseIfSent();
      nodeHttp.validateHeaderName(name);
      nodeHttp.validateHeaderValue(name, value as string);
      (this.#headers ??= Object.create(null) as Record<string, HeaderValue>)[name.toLowerCase()] = value;
      return this;
    }

    appendHeader(name: string, value: HeaderValue): this {
      const lower = name.toLowerCase();
      const existing = this.#headers?.[lower];
      if (existing === undefined) return this.setHeader(name, value);
      this.#refuseIfSent();
      nodeHttp.validateHeaderValue(name, value as string);
      const values = Array.isArray(value) ? value.map(String) : [String(value)];
      this.#headers![lower] = [...(Array.isArray(existing) ? existing : [String(existing)]), ...values];
      return this;
    }

    #hasFields(): boolean {
      if (this.#headers !== null) for (const _ in this.#headers) return true;
      return false;
    }

    getHeader(name: string): HeaderValue | undefined {
      return this.#headers?.[name.toLowerCase()];
    }

    hasHeader(name: string): boolean {
      return this.#headers !== null && Object.hasOwn(this.#headers, name.toLowerCase());
    }

    getHeaderNames(): string[] {
      return this.#headers === null ? [] : Object.keys(this.#headers);
    }

    getHeaders(): OutgoingHttpHeaders {
      return Object.assign(Object.create(null) as OutgoingHttpHeaders, this.#headers);
    }

    removeHeader(name: string): void {
      this.#refuseIfSent();
      const lower = name.toLowerCase();
      // As the compatibility layer: removing Date means sending none.
      if (lower === 'date') this.#sendDate = false;
      if (this.#headers !== null) delete this.#headers[lower];
    }

    addTrailers(headers: OutgoingHttpHeaders | readonly (readonly [string, string])[]): void {
      const entries = Array.isArray(headers) ? headers : Object.entries(headers);
      for (const [name, value] of entries as [string, HeaderValue | undefined][]) {
        if (value === undefined) continue;
        nodeHttp.validateHeaderName(name);
        nodeHttp.validateHeaderValue(name, value as string);
        (this.#trailers ??= Object.create(null) as Record<string, HeaderValue>)[name.toLowerCase()] = value;
      }
    }

    writeHead(
      statusCode: number,
      reasonOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
      maybeHeaders?: OutgoingHttpHeaders | OutgoingHttpHeader[],
    ): this {
      const stream = this.stream;
      if (this.#closed || stream.destroyed || stream.closed) return this;
      this.#refuseIfSent();
      const headers = typeof reasonOrHeaders === 'string' ? maybeHeaders : reasonOrHeaders;
      // A private method is one function for every response: the writer calls it with this response as `this`.
      writeUnderPolicy(
        this,
        this.#respond as (statusCode: number, headers?: OutgoingHttpHeaders | OutgoingHttpHeader[]) => void,
        statusCode,
        headers,
      );
      return this;
    }

    /**
     * The head on the stream: the fields set one by one, then the given ones
     * (given names win, as writeHead's do over setHeader's), as the flat list
     * respond() takes. Called by the policy writer with the policy's fields merged in.
     */
    #respond(statusCode: number, given?: OutgoingHttpHeaders | OutgoingHttpHeader[]): void {
      this.statusCode = statusCode;
      const list: FieldList = [':status', this.#status];
      const own = this.#headers;
      if (Array.isArray(given)) {
        const pairs = given.length > 0 && Array.isArray(given[0]);
        if (!pairs && given.length % 2 !== 0)
          throw codedError('ERR_INVALID_ARG_VALUE', 'writeHead: a flat header list needs a value for every name');
        if (own !== null) {
          for (let i = 0; i < given.length; i += pairs ? 1 : 2)
            delete own[String(pairs ? (given[i] as unknown as string[])[0] : given[i]).toLowerCase()];
          pushOwn(list, own, null);
        }
        if (pairs) for (const pair of given as unknown as [string, HeaderValue][]) list.push(pair[0], pair[1]);
        else for (let i = 0; i < given.length; i += 2) list.push(given[i] as string, given[i + 1] as HeaderValue);
      } else if (given !== undefined) {
        if (own !== null) pushOwn(list, own, given);
        for (const name of Object.keys(given)) {
          const value = given[name];
          if (value !== undefined) list.push(name, value);
        }
      } else if (own !== null) pushOwn(list, own, null);
      this.#start(list);
    }

    /** Whether the client takes trailers (TE: trailers): then respond() asks for them, and they go when the stream wants them. */
    #hookTrailers(): boolean {
      const trailers = this.req.fields.te !== undefined;
      if (trailers) this.stream.on('wantTrailers', streamWantsTrailers);
      return trailers;
    }

    /** respond() with `head`: the stream ends with it when the response has already ended (no body follows). */
    #start(head: FieldList): void {
      const stream = this.stream;
      const trailers = this.#hookTrailers();
      // A flat field list: Node's respond() takes one (its typing names only the object form).
      stream.respond(head as unknown as OutgoingHttpHeaders, respondOptions(this.#ending, trailers, this.#sendDate));
    }

    /**
     * A cached answer (response-headers.ts, answerCached): one respond() with
     * a head prepared once per headers object, policy and status (with the
     * Date of the second), and the body in the stream's end(). The head goes
     * as the header block Node would build from it (http2-respond.ts), or
     * else as the flat field list to Node's respond(); a response that asks
     * for trailers takes respond(). A response with fields set one by one,
     * or already started, takes writeHead and end.
     */
    [ANSWER](statusCode: number, headers: OutgoingHttpHeaders, body: Buffer | undefined): void {
      const head = Object.isFrozen(headers) ? preparedHttp2Head(this, statusCode, headers) : null;
      const stream = this.stream;
      if (head === null || this.#closed || stream.headersSent || stream.destroyed || stream.closed || this.#hasFields()) {
        this.writeHead(statusCode, headers);
        this.end(body);
        return;
      }
      this.#status = statusCode;
      this.#ending = true;
      // HEAD and the statuses without content end the stream in respond() (RFC 9110 §9.3.2, §15.3.5, §15.4.5).
      const bodyless =
        body === undefined ||
        (stream as ServerHttp2Stream & { headRequest?: boolean }).headRequest === true ||
        statusCode === 204 ||
        statusCode === 205 ||
        statusCode === 304;
      const trailers = this.#hookTrailers();
      const block = trailers ? null : http2HeadBlock(head, this.#sendDate);
      if (block === null || !respondWithBlock(stream, block, bodyless))
        stream.respond(
          http2HeadFields(head, this.#sendDate) as unknown as OutgoingHttpHeaders,
          respondOptions(bodyless, trailers, this.#sendDate),
        );
      if (!bodyless) {
        this.bytesHanded += body.length;
        stream.end(body);
      }
    }

    write(
      chunk: unknown,
      encoding?: BufferEncoding | ((error?: Error | null) => void),
      callback?: (error?: Error | null) => void,
    ): boolean {
      if (typeof encoding === 'function') {
        callback = encoding;
        encoding = undefined;
      }
      if (this.#ending || this.#closed) {
        const error = this.#ending
          ? codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end')
          : codedError('ERR_HTTP2_INVALID_STREAM', 'The stream has been destroyed');
        if (typeof callback === 'function') process.nextTick(callback, error);
        this.destroy(error);
        return false;
      }
      const stream = this.stream;
      if (stream.destroyed) return false;
      if (!stream.headersSent) this.writeHead(this.#status);
      if (stream.writableEnded) {
        // respond() ended the stream (HEAD, 204, 205, 304): the body is dropped, as over HTTP/1.
        if (typeof callback === 'function') process.nextTick(callback);
        return true;
      }
      this.bytesHanded += byteLength(chunk, encoding);
      const flushed = stream.write(chunk, encoding as BufferEncoding, callback);
      if (!flushed && !this.#drainHooked) {
        this.#drainHooked = true;
        stream.on('drain', streamDrained);
      }
      return flushed;
    }

    end(chunk?: unknown, encoding?: BufferEncoding | (() => void), callback?: () => void): this {
      if (typeof chunk === 'function') {
        callback = chunk as () => void;
        chunk = undefined;
      } else if (typeof encoding === 'function') {
        callback = encoding;
        encoding = undefined;
      }
      if (this.#closed || this.#ending) {
        if (typeof callback === 'function') process.nextTick(callback);
        return this;
      }
      const stream = this.stream;
      const body = chunk !== undefined && chunk !== null;
      // Without a body the head ends the stream; with one, head, body and end go in two calls.
      if (!body) this.#ending = true;
      if (!stream.headersSent) this.writeHead(this.#status);
      this.#ending = true;
      if (typeof callback === 'function') {
        if (stream.writableEnded) this.once('finish', callback);
        else stream.once('finish', callback);
      }
      if (this.#closed || stream.destroyed) this.#close();
      else if (stream.writableEnded) return this;
      else if (body) {
        this.bytesHanded += byteLength(chunk, encoding);
        stream.end(chunk, encoding as BufferEncoding);
      } else stream.end();
      return this;
    }

    flushHeaders(): void {
      if (!this.#closed && !this.stream.headersSent) this.writeHead(this.#status);
    }

    cork(): void {
      this.stream.cork();
    }

    uncork(): void {
      this.stream.uncork();
    }

    setTimeout(ms: number, callback?: () => void): this {
      if (!this.#closed) this.stream.setTimeout(ms, callback);
      return this;
    }

    destroy(error?: Error): this {
      if (this.#destroyCalled) return this;
      this.#destroyCalled = true;
      this.stream.destroy(error);
      return this;
    }
  };
}

/** The fields set one by one onto `list`, but those `given` names (in any case). */
function pushOwn(list: FieldList, own: Record<string, HeaderValue>, given: OutgoingHttpHeaders | null): void {
  let overridden: Set<string> | null = null;
  if (given !== null) {
    overridden = new Set();
    for (const name of Object.keys(given)) if (given[name] !== undefined) overridden.add(name.toLowerCase());
  }
  for (const name of Object.keys(own)) if (overridden === null || !overridden.has(name)) list.push(name, own[name]!);
}
