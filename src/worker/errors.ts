/**
 * The closed catalogue of request rejections. Every error response the
 * worker sends comes from here and goes out through `sendError`, so the
 * client only ever sees the generic text, never internals, and every
 * rejection carries an audit event name. docs/errors.md lists the same
 * table; test/unit/errors.test.ts keeps the two in step.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

export interface ErrorSpec {
  /** HTTP status sent to the client. */
  readonly status: number;
  /** Event name written to the audit/access log. */
  readonly event: string;
  /** The only text the client sees. */
  readonly text: string;
  /** Close the connection after answering: framing can no longer be trusted. */
  readonly close: boolean;
}

export const ERRORS = {
  BAD_REQUEST: { status: 400, event: 'request.bad', text: 'Bad Request', close: true },
  MALFORMED_REQUEST: { status: 400, event: 'request.malformed', text: 'Bad Request', close: true },
  REQUEST_TIMEOUT: { status: 408, event: 'request.timeout', text: 'Request Timeout', close: true },
  HEADERS_TOO_LARGE: { status: 431, event: 'request.headers_too_large', text: 'Request Header Fields Too Large', close: true },
  TOO_MANY_HEADERS: { status: 431, event: 'request.too_many_headers', text: 'Request Header Fields Too Large', close: true },
  HEADER_NAME_TOO_LONG: { status: 431, event: 'request.header_name_too_long', text: 'Request Header Fields Too Large', close: true },
  HEADER_VALUE_TOO_LONG: { status: 431, event: 'request.header_value_too_long', text: 'Request Header Fields Too Large', close: true },
  BAD_HEADER_VALUE: { status: 400, event: 'request.bad_header_value', text: 'Bad Request', close: true },
  MISSING_HOST: { status: 400, event: 'request.missing_host', text: 'Bad Request', close: true },
  DUPLICATE_HOST: { status: 400, event: 'request.duplicate_host', text: 'Bad Request', close: true },
  BAD_HOST: { status: 400, event: 'request.bad_host', text: 'Bad Request', close: true },
  DUPLICATE_HEADER: { status: 400, event: 'request.duplicate_header', text: 'Bad Request', close: true },
  BAD_TARGET: { status: 400, event: 'request.bad_target', text: 'Bad Request', close: true },
  VERSION_NOT_SUPPORTED: { status: 505, event: 'request.version_not_supported', text: 'HTTP Version Not Supported', close: true },
  URL_TOO_LONG: { status: 414, event: 'request.url_too_long', text: 'URI Too Long', close: true },
  BODY_TOO_LARGE: { status: 413, event: 'request.body_too_large', text: 'Content Too Large', close: true },
  CHUNK_TOO_LARGE: { status: 413, event: 'request.chunk_too_large', text: 'Content Too Large', close: true },
  JSON_TOO_DEEP: { status: 400, event: 'request.json_too_deep', text: 'Bad Request', close: true },
  TOO_MANY_FORM_FIELDS: { status: 413, event: 'request.too_many_form_fields', text: 'Content Too Large', close: true },
  BAD_MULTIPART: { status: 400, event: 'request.bad_multipart', text: 'Bad Request', close: true },
  TRANSFER_ENCODING_NOT_SUPPORTED: { status: 501, event: 'request.transfer_encoding_not_supported', text: 'Not Implemented', close: true },
  AMBIGUOUS_FRAMING: { status: 400, event: 'request.ambiguous_framing', text: 'Bad Request', close: true },
  BODY_TIMEOUT: { status: 408, event: 'request.body_timeout', text: 'Request Timeout', close: true },
  SLOW_CLIENT: { status: 408, event: 'request.slow_client', text: 'Request Timeout', close: true },
  CLIENT_BLOCKED: { status: 403, event: 'request.client_blocked', text: 'Forbidden', close: true },
  IDS_BLOCKED: { status: 403, event: 'request.ids_blocked', text: 'Forbidden', close: true },
  RATE_LIMITED: { status: 429, event: 'request.rate_limited', text: 'Too Many Requests', close: false },
  PRIVATE_CLIENT_IP: { status: 403, event: 'request.private_client_ip', text: 'Forbidden', close: true },
  MISSING_PROXY_HEADERS: { status: 400, event: 'request.missing_proxy_headers', text: 'Bad Request', close: true },
  BAD_PATH: { status: 400, event: 'request.bad_path', text: 'Bad Request', close: false },
  FORBIDDEN_PATH: { status: 403, event: 'request.forbidden_path', text: 'Forbidden', close: false },
  AUTH_REQUIRED: { status: 401, event: 'auth.required', text: 'Unauthorized', close: false },
  AUTH_FAILED: { status: 401, event: 'auth.failed', text: 'Unauthorized', close: false },
  AUTH_OVERLOADED: { status: 503, event: 'auth.overloaded', text: 'Service Unavailable', close: false },
  ACCESS_DENIED: { status: 403, event: 'request.access_denied', text: 'Forbidden', close: false },
  NOT_FOUND: { status: 404, event: 'request.not_found', text: 'Not Found', close: false },
  METHOD_NOT_ALLOWED: { status: 405, event: 'request.method_not_allowed', text: 'Method Not Allowed', close: false },
  UNKNOWN_HOST: { status: 421, event: 'request.unknown_host', text: 'Misdirected Request', close: false },
  RANGE_NOT_SATISFIABLE: { status: 416, event: 'request.bad_range', text: 'Range Not Satisfiable', close: false },
  UPGRADE_REFUSED: { status: 403, event: 'request.upgrade_refused', text: 'Forbidden', close: true },
  WEBSOCKET_BAD_HANDSHAKE: { status: 400, event: 'request.websocket_bad_handshake', text: 'Bad Request', close: true },
  WEBSOCKET_VERSION: { status: 426, event: 'request.websocket_version', text: 'Upgrade Required', close: true },
  INTERNAL: { status: 500, event: 'server.internal_error', text: 'Internal Server Error', close: true },
  UPSTREAM_UNAVAILABLE: { status: 502, event: 'upstream.unavailable', text: 'Bad Gateway', close: false },
  UPSTREAM_BAD_RESPONSE: { status: 502, event: 'upstream.bad_response', text: 'Bad Gateway', close: true },
  UPSTREAM_TIMEOUT: { status: 504, event: 'upstream.timeout', text: 'Gateway Timeout', close: false },
  UPSTREAM_TLS_FAILED: { status: 502, event: 'upstream.tls_failed', text: 'Bad Gateway', close: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** A rejection raised anywhere in the pipeline or a handler. */
export class HttpError extends Error {
  readonly spec: ErrorSpec;
  constructor(
    readonly code: ErrorCode,
    /** Internal detail for the log; never sent to the client. */
    readonly detail?: string,
    /** Headers the answer must carry (Retry-After on 429). */
    readonly headers?: OutgoingHttpHeaders,
  ) {
    super(detail ? `${code}: ${detail}` : code);
    this.spec = ERRORS[code];
  }
}

/**
 * The bytes of a catalogued error response for a connection that has no
 * ServerResponse (a parse error caught by 'clientError'). Always closes:
 * after a parse error the framing of anything that follows is unknown.
 */
export function rawErrorResponse(code: ErrorCode, extraHeaders: readonly (readonly [string, string])[]): string {
  const spec = ERRORS[code];
  const body = `${spec.status} ${spec.text}\n`;
  let head = `HTTP/1.1 ${spec.status} ${spec.text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nCache-Control: no-store\r\nConnection: close\r\n`;
  for (const [name, value] of extraHeaders) head += `${name}: ${value}\r\n`;
  return `${head}\r\n${body}`;
}

/** A page of a site's own for some statuses (error_pages), as the route stage attaches it to a response (../error-pages.ts). */
export interface ErrorPageSource {
  serves(status: number): boolean;
  /** Calls `send` once, with the page, or null for the catalogue's text. */
  page(status: number, send: (page: { readonly body: Buffer; readonly contentType: string } | null) => void): void;
}

const ERROR_PAGES = Symbol('errorPages');

/** From the route stage on, errors on `res` are answered with the site's pages where it has one. */
export function useErrorPages(res: ServerResponse, pages: ErrorPageSource): void {
  (res as unknown as { [ERROR_PAGES]?: ErrorPageSource })[ERROR_PAGES] = pages;
}

/**
 * Answer with a catalogued error, plus the headers its status requires, and
 * the site's own page for the status when it has one (the status is kept).
 * If the response has already started, the only honest thing left is to cut
 * the connection so the client sees a truncated body rather than a wrong one.
 */
export function sendError(res: ServerResponse, code: ErrorCode, headers?: OutgoingHttpHeaders): void {
  const spec = ERRORS[code];
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const pages = (res as unknown as { [ERROR_PAGES]?: ErrorPageSource })[ERROR_PAGES];
  if (pages?.serves(spec.status) === true) {
    pages.page(spec.status, (page) => {
      if (res.destroyed) return;
      if (res.headersSent) res.destroy();
      else writeError(res, spec, headers, page);
    });
    return;
  }
  writeError(res, spec, headers, null);
}

function writeError(
  res: ServerResponse,
  spec: ErrorSpec,
  headers: OutgoingHttpHeaders | undefined,
  page: { readonly body: Buffer; readonly contentType: string } | null,
): void {
  const body = page?.body ?? `${spec.status} ${spec.text}\n`;
  // Whatever the handler had set goes; the security headers come back at
  // writeHead (response-headers.ts).
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  // Headers the status itself calls for: Allow on 405, Content-Range on 416, WWW-Authenticate on 401.
  for (const [name, value] of Object.entries(headers ?? {})) if (value !== undefined) res.setHeader(name, value);
  res.statusCode = spec.status;
  res.setHeader('Content-Type', page?.contentType ?? 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  // Close when the catalogue says so, and whenever the request body has not
  // been read to its end: answered early, what is left of it on the
  // connection would be read as the next request.
  if (spec.close || bodyUnread(res.req)) res.shouldKeepAlive = false;
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/**
 * A request body not read to its end. (`complete` alone is no guide: Node
 * calls the handler before it marks even a bodyless request complete.)
 */
function bodyUnread(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
