/**
 * A response head serialized once and reused: the status line and every
 * header of a cached answer (a static file's, with the security headers
 * merged in), validated once, kept as one string per second with the Date
 * and Connection lines appended. Node's writeHead would walk the headers,
 * test each name and value against its regular expressions and build the
 * same string again on every response: a measured fifth of a worker's
 * JavaScript time on the static path (docs/benchmark.md).
 *
 * The head is handed to Node's own ServerResponse as the head it would have
 * built (`_header`, what `_storeHeader` leaves behind), so everything after
 * it is Node's as usual: one corked write of head and body, keep-alive,
 * pipelining, 'finish' and 'close'. What `_storeHeader` decides per
 * response is decided here the same way (node/lib/_http_outgoing.js, Node
 * 24): the Date line (one string per second), keep-alive or close, and
 * nothing else, because a prepared head carries its own Content-Length (or
 * has no body) and none of Connection, Date, Transfer-Encoding, Trailer or
 * Expect. A response in any other state (headers set one by one, a head
 * already written) takes writeHead as before.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { nodeHttp } from '../node-builtins.js';

/** Node's own per-response fields that `_storeHeader` reads and writes. */
interface NodeResponse {
  _header: string | null;
  _headerSent: boolean;
  _last: boolean;
  _hasBody: boolean;
  _keepAliveTimeout: number;
  _defaultKeepAlive: boolean;
  _maxRequestsPerSocket?: number;
  _expect_continue: boolean;
  _sent100: boolean;
  shouldKeepAlive: boolean;
  maxRequestsOnConnectionReached: boolean;
  useChunkedEncodingByDefault: boolean;
  agent?: unknown;
  sendDate: boolean;
}

/**
 * Node's symbol for headers set one by one (setHeader): a response that has
 * any takes the ordinary path. Found once on a response of this Node; when
 * absent (another Node), every response takes the ordinary path.
 */
const OUT_HEADERS: symbol | undefined = Object.getOwnPropertySymbols(
  new nodeHttp.ServerResponse({ method: 'GET', headers: {}, httpVersionMajor: 1, httpVersionMinor: 1 } as never),
).find((symbol) => symbol.description === 'kOutHeaders');

/** Header fields whose presence makes Node's per-response logic differ from the prepared path's. */
const DECIDED_PER_RESPONSE: ReadonlySet<string> = new Set(['connection', 'date', 'transfer-encoding', 'trailer', 'expect', 'keep-alive']);

export interface PreparedHead {
  readonly statusCode: number;
  readonly statusMessage: string;
  /** The status line and the header lines, each ending in CRLF. */
  readonly lines: string;
  /** The head has a Content-Length (else it is a 204 or 304, which has no body). */
  readonly hasContentLength: boolean;
  /** The whole head for the current second: [keep-alive, close]. */
  second: number;
  keepAlive: string;
  close: string;
}

/**
 * The head for `statusCode` and `headers` (the security headers already
 * merged in), or null when it cannot be prepared: a field decided per
 * response, no Content-Length on a status that has a body, or a name or
 * value Node refuses (the ordinary path then throws Node's error).
 */
export function prepareHead(statusCode: number, headers: OutgoingHttpHeaders): PreparedHead | null {
  const statusMessage = nodeHttp.STATUS_CODES[statusCode];
  if (statusMessage === undefined) return null;
  let lines = `HTTP/1.1 ${statusCode} ${statusMessage}\r\n`;
  let hasContentLength = false;
  try {
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      if (DECIDED_PER_RESPONSE.has(lower)) return null;
      if (lower === 'content-length') hasContentLength = true;
      nodeHttp.validateHeaderName(name);
      for (const item of Array.isArray(value) ? value : [String(value)]) {
        nodeHttp.validateHeaderValue(name, item);
        lines += `${name}: ${item}\r\n`;
      }
    }
  } catch {
    return null;
  }
  // RFC 9110 §15.3.5, §15.4.5: 204 and 304 have no body; anything else must say how long it is.
  if (!hasContentLength && statusCode !== 204 && statusCode !== 304) return null;
  return { statusCode, statusMessage, lines, hasContentLength, second: -1, keepAlive: '', close: '' };
}

let httpDateSecond = -1;
let httpDateValue = '';

/** The IMF-fixdate of `second` (RFC 9110 §5.6.7), for a Date field: made once a second. */
export function httpDate(second: number): string {
  if (second !== httpDateSecond) {
    httpDateSecond = second;
    httpDateValue = new Date(second * 1000).toUTCString();
  }
  return httpDateValue;
}
/** The Keep-Alive line for the server's keepAliveTimeout, computed once per value. */
let keepAliveFor = -1;
let keepAliveLine = '';

function keepAliveLines(res: NodeResponse): string {
  if (!res._keepAliveTimeout || !res._defaultKeepAlive) return 'Connection: keep-alive\r\n';
  const max = ~~(res._maxRequestsPerSocket ?? 0);
  const key = res._keepAliveTimeout * 1e6 + max;
  if (key !== keepAliveFor) {
    keepAliveFor = key;
    keepAliveLine = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(res._keepAliveTimeout / 1000)}${max > 0 ? `, max=${max}` : ''}\r\n`;
  }
  return keepAliveLine;
}

/**
 * Sends `body` (undefined: none, as for HEAD or a 304) with `head` on
 * `res`; false, having sent nothing, when `res` is not a plain HTTP/1
 * response with no head and no headers set, so the caller takes writeHead.
 */
export function sendPrepared(res: ServerResponse, head: PreparedHead, body: Buffer | undefined): boolean {
  const node = res as unknown as NodeResponse;
  if (OUT_HEADERS === undefined || node._header !== null || (res as unknown as Record<symbol, unknown>)[OUT_HEADERS] != null) return false;
  if (!node.sendDate) return false;
  res.statusCode = head.statusCode;
  res.statusMessage = head.statusMessage;
  if (!head.hasContentLength) node._hasBody = false;
  // As writeHead: a client that expects 100 Continue and got a final status may send its body anyway.
  if (node._expect_continue && !node._sent100) node.shouldKeepAlive = false;
  const keepAlive =
    node.shouldKeepAlive &&
    (head.hasContentLength || node.useChunkedEncodingByDefault || (node.agent !== undefined && node.agent !== null));
  const nowSecond = Math.floor(Date.now() / 1000);
  if (head.second !== nowSecond) {
    head.second = nowSecond;
    const dateLine = `Date: ${httpDate(nowSecond)}\r\n`;
    head.keepAlive = `${head.lines}${dateLine}${keepAliveLines(node)}\r\n`;
    head.close = `${head.lines}${dateLine}Connection: close\r\n\r\n`;
  }
  if (keepAlive && !node.maxRequestsOnConnectionReached) node._header = head.keepAlive;
  else {
    // Node marks the response last only when it decided to close, not when the request limit did.
    if (!keepAlive) node._last = true;
    node._header = head.close;
  }
  node._headerSent = false;
  res.end(body);
  return true;
}
