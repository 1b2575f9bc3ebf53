/**
 * Node's Http2Stream.respond() for a head prepared once (a cached answer:
 * response-headers.ts http2HeadBlock), without rebuilding its header block
 * on every response.
 *
 * respond() turns the fields it is given into one string, "name\0value\0"
 * and a flags byte per field, and hands that with a count to the stream's
 * native handle, which gives it to nghttp2. Building the string again for
 * every response, field by field, is most of what a bare Node server
 * spends to send 13 fields rather than three (docs/benchmark.md, "The
 * header block, made once"); for a cached answer it is the same string
 * every time but the Date. Here the string is made once (and once a second
 * with the Date) and handed over as respond() hands over its own, with the
 * same steps around it: the stream's timers refreshed, its headers-sent
 * flag set, its writable side ended when no body follows. (respond() also
 * keeps the fields for `stream.sentHeaders`, which nothing here reads: a
 * stream answered this way shows none there.)
 *
 * These are Node's internals (lib/internal/http2/core.js), found by their
 * symbols' names on the first stream and read back on every use: the flag
 * set must show in the public `headersSent`. Where any of it is missing,
 * or where something listens on the diagnostics channel respond() reports
 * to, the public respond() answers (respondWithBlock returns false), as it
 * does for every answer that is not a prepared head.
 * test/unit/http2-exchange.test.ts pins the internals on the Node this
 * project runs on.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';

/** What respond() publishes each answer to (Node's documented diagnostics channel): with a subscriber, Node's respond() answers. */
const respondedChannel = diagnosticsChannel.channel('http2.server.stream.finish');

/** respond()'s option "no body follows" for the native handle (http2.constants, untyped). */
const EMPTY_PAYLOAD = (h2 as unknown as Record<string, unknown>).STREAM_OPTION_EMPTY_PAYLOAD;

/** Node's flag for "headers sent" in a stream's state (STREAM_FLAGS_HEADERS_SENT), read back through `headersSent`. */
const HEADERS_SENT_FLAG = 0x4;

interface NativeHandle {
  respond(block: readonly [string, number], options: number): number;
}

/** The symbols of a stream's internals respond() uses, by their names in Node's source. */
interface StreamKeys {
  readonly handle: symbol;
  readonly state: symbol;
  readonly updateTimer: symbol;
}

type InternalStream = ServerHttp2Stream & Record<symbol, unknown>;

/** Undefined until the first stream is seen; null when this Node lacks what is needed. */
let streamKeys: StreamKeys | null | undefined;

/** The symbol named `name` (its description in Node's source) on `object` or its prototypes: how Node's internal keys are found. */
export function findSymbol(object: object, name: string): symbol | undefined {
  for (let on: object | null = object; on !== null; on = Object.getPrototypeOf(on) as object | null) {
    const found = Object.getOwnPropertySymbols(on).find((symbol) => symbol.description === name);
    if (found !== undefined) return found;
  }
  return undefined;
}

function keysOf(stream: InternalStream): StreamKeys | null {
  const handle = findSymbol(stream, 'kHandle');
  const state = findSymbol(stream, 'state');
  const updateTimer = findSymbol(stream, 'kUpdateTimer');
  if (handle === undefined || state === undefined || updateTimer === undefined || typeof EMPTY_PAYLOAD !== 'number') return null;
  const native = stream[handle] as Partial<NativeHandle> | undefined;
  const flags = (stream[state] as { flags?: unknown } | undefined)?.flags;
  if (typeof native?.respond !== 'function' || typeof flags !== 'number' || typeof stream[updateTimer] !== 'function') return null;
  return { handle, state, updateTimer };
}

/** Whether respondWithBlock can answer on this Node (looked up on the first stream). */
export function preparedRespondAvailable(stream: ServerHttp2Stream): boolean {
  if (streamKeys === undefined) streamKeys = keysOf(stream as InternalStream);
  return streamKeys !== null;
}

/**
 * Sends `block` (a prepared header block and its field count, ":status"
 * first) as the head of `stream`, which has sent none and is open; with
 * `endStream`, no body follows. False when Node's own respond() must answer
 * instead (see the file comment); then nothing was done.
 */
export function respondWithBlock(stream: ServerHttp2Stream, block: readonly [string, number], endStream: boolean): boolean {
  if (!preparedRespondAvailable(stream) || respondedChannel.hasSubscribers) return false;
  const keys = streamKeys as StreamKeys;
  const internal = stream as InternalStream;
  const native = internal[keys.handle] as NativeHandle | undefined;
  if (native === undefined) return false;
  const state = internal[keys.state] as { flags: number };
  state.flags |= HEADERS_SENT_FLAG;
  if (!stream.headersSent) {
    // Node keeps the flag elsewhere now: undone, and its respond() answers from here on.
    state.flags &= ~HEADERS_SENT_FLAG;
    streamKeys = null;
    return false;
  }
  (internal[keys.updateTimer] as () => void).call(stream);
  if (endStream) stream.end();
  const code = native.respond(block, endStream ? (EMPTY_PAYLOAD as number) : 0);
  if (code < 0)
    stream.destroy(Object.assign(new Error(`nghttp2 refused the response head (${code})`), { code: 'ERR_HTTP2_ERROR', errno: code }));
  return true;
}
