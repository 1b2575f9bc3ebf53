// Over 400 lines: one exchange with an upstream, undici's DispatchHandler callbacks in the order undici calls them; balancing and hop-by-hop fields live apart.
/**
 * The reverse proxy handler: one undici Pool per upstream target, requests
 * dispatched through undici's low-level `dispatch` API so bodies stream in
 * both directions with backpressure and nothing is buffered whole.
 *
 * What crosses the proxy is re-serialised, never copied as bytes: undici
 * writes the request head from the header list built here, and the Node
 * server writes the response head from undici's parsed fields, so framing
 * (Content-Length / chunked) is decided afresh on each hop and a smuggled
 * framing header on one side cannot reach the other (RFC 9112 §6.1, §11.2).
 *
 * Upstream selection and passive health checks live in upstreams.ts; the
 * hop-by-hop list in hop-by-hop.ts.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { Pool, errors as undiciErrors } from 'undici';
import type { Dispatcher } from 'undici';
import type { BackendSpec } from '../../config/types.js';
import { ERRORS, sendError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { hasBodyWithoutLength } from '../http2-request.js';
import { ADDRESS_HEADERS, forwardingHeaders } from './forwarding.js';
import { HOP_BY_HOP_HEADERS, connectionListedHeaders, endToEndResponseHeaders } from './hop-by-hop.js';
import type { RequestContext, RequestHandler } from './types.js';
import { UpstreamBalancer, UpstreamPeer } from './upstreams.js';

export type ProxyBackend = Extract<BackendSpec, { type: 'proxy' }>;

/**
 * Idle upstream connections are closed after this long unless the upstream
 * announces a shorter `Keep-Alive: timeout`. It is kept below the usual
 * server-side idle timeouts (Node 5 s, nginx 75 s, Apache 5 s) so that we
 * close an idle connection before the upstream does; otherwise a request can
 * be written onto a socket the upstream is closing and fail with a reset.
 */
const UPSTREAM_KEEP_ALIVE_TIMEOUT_MS = 4_000;
/** Upper bound on an upstream's own Keep-Alive hint; nginx's keepalive_timeout default. */
const UPSTREAM_KEEP_ALIVE_MAX_TIMEOUT_MS = 60_000;

/**
 * Request fields the proxy sets itself, so any copy the client sent is
 * dropped: framing (Content-Length is re-derived, RFC 9112 §6.3), Host (set
 * per target) and Expect (the Node server has already answered 100 Continue
 * on this hop, and undici refuses to send it). The client-address headers
 * are forwarding.ts's.
 */
const PROXY_OWNED_REQUEST_HEADERS: ReadonlySet<string> = new Set(['host', 'content-length', 'expect', ...ADDRESS_HEADERS]);

/**
 * Methods retried on another target after a connect error, a reset before
 * the response or a timeout (nginx `proxy_next_upstream error timeout`,
 * which likewise never retries a non-idempotent request, since 1.9.13).
 */
const RETRYABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * CONNECT would turn the proxy into a tunnel to wherever the upstream
 * points, and TRACE reflects the request headers back (cross-site tracing);
 * nginx answers 405 to both.
 */
const REFUSED_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'TRACE']);
/** RFC 9110 §15.5.6: a 405 names the methods that are served. */
const PROXY_ALLOW: OutgoingHttpHeaders = Object.freeze({ Allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' });

const ABSOLUTE_FORM = /^https?:\/\//i;

type DispatchOptions = Dispatcher.DispatchOptions & {
  /** TLS SNI name; undici would otherwise derive it from the Host header we send. */
  servername?: string;
};

/** One upstream target: its connection pool plus its balancing state. */
class UpstreamTarget extends UpstreamPeer {
  /** How the target appears in notes: origin plus path prefix. */
  readonly label: string;
  readonly pool: Pool;
  /** Path of the target URL without its trailing slash: "" or "/api". */
  readonly pathPrefix: string;
  /** host[:port] of the target, the Host header when the client's is not passed on. */
  readonly hostHeader: string;
  /**
   * SNI and certificate name for an https target named by DNS name, so a
   * preserved client Host does not decide which certificate is verified
   * (nginx proxy_ssl_name defaults to the proxy_pass host). An IP literal
   * cannot be an SNI name (RFC 6066 §3); undici then derives it from the
   * Host header sent.
   */
  readonly servername: string | undefined;

  constructor(url: URL, weight: number, backend: ProxyBackend) {
    super(weight);
    this.pathPrefix = url.pathname.replace(/\/+$/, '');
    this.label = url.origin + this.pathPrefix;
    this.hostHeader = url.host;
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    this.servername = url.protocol === 'https:' && isIP(hostname) === 0 ? hostname : undefined;
    this.pool = new Pool(url.origin, {
      // No cap on connections to a target: with one, slow clients (a slow
      // read holds its upstream connection while it trickles) fill the pool
      // and every other request waits behind them in undici's queue —
      // measured with slowhttptest -X. Idle connections close after the
      // keep-alive timeout; without keep-alive each request closes its own.
      connections: null,
      pipelining: 1,
      keepAliveTimeout: UPSTREAM_KEEP_ALIVE_TIMEOUT_MS,
      keepAliveMaxTimeout: UPSTREAM_KEEP_ALIVE_MAX_TIMEOUT_MS,
      connect: { timeout: backend.connectTimeoutMs },
      headersTimeout: backend.upstreamTimeoutMs,
      bodyTimeout: backend.upstreamTimeoutMs,
    });
  }
}

interface ProxyShared {
  readonly balancer: UpstreamBalancer<UpstreamTarget>;
  readonly preserveHost: boolean;
  /** keepalive = false: ask for `Connection: close` on every upstream request. */
  readonly closeUpstreamConnections: boolean;
}

/**
 * Build the reverse proxy handler for one vhost backend. Pools connect
 * lazily, on the first request to each target.
 */
export function createProxyHandler(backend: ProxyBackend): RequestHandler {
  const targets = backend.targets.map((target) => new UpstreamTarget(new URL(target.url), target.weight, backend));
  const shared: ProxyShared = {
    balancer: new UpstreamBalancer(targets, backend.loadBalancing, backend),
    preserveHost: backend.preserveHost,
    closeUpstreamConnections: !backend.keepAlive,
  };
  let closing: Promise<void> | null = null;
  return {
    handle(req, res, ctx) {
      new ProxyExchange(shared, req, res, ctx).start();
    },
    // Graceful: requests in flight finish (each bounded by the upstream
    // timeouts), new ones are refused with 502; the master's shutdown
    // timeout bounds the whole drain. Idempotent, as undici's close is not.
    close() {
      closing ??= Promise.all(targets.map((target) => target.pool.close())).then(() => undefined);
      return closing;
    },
  };
}

/** The error a request fails with, and whether it counts against the target. */
interface Outcome {
  readonly code: ErrorCode;
  /** nginx `proxy_next_upstream error timeout`: marks the target and allows a retry. */
  readonly upstreamFailure: boolean;
}

const TIMED_OUT: Outcome = { code: 'UPSTREAM_TIMEOUT', upstreamFailure: true };
const UNREACHABLE: Outcome = { code: 'UPSTREAM_UNAVAILABLE', upstreamFailure: true };
const CLOSING: Outcome = { code: 'UPSTREAM_UNAVAILABLE', upstreamFailure: false };
const MALFORMED: Outcome = { code: 'UPSTREAM_BAD_RESPONSE', upstreamFailure: false };
const REFUSED_REQUEST: Outcome = { code: 'BAD_REQUEST', upstreamFailure: false };
const UNEXPECTED: Outcome = { code: 'INTERNAL', upstreamFailure: false };

function errorCode(err: Error): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Map an undici or socket error to the answer the client gets. Only
 * errors reaching or waiting for the upstream count as its failure; a
 * malformed response does not (nginx counts `invalid_header` only when it
 * is listed in proxy_next_upstream, which it is not by default).
 */
function classify(err: Error): Outcome {
  // llhttp parse errors: the upstream spoke broken HTTP. Their code is
  // HPE_* when llhttp names the error, absent otherwise.
  if (err instanceof undiciErrors.HTTPParserError) return MALFORMED;
  const code = errorCode(err);
  switch (code) {
    case undefined:
      return UNEXPECTED;
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      // nginx answers 504 to a connect timeout as well as a read timeout.
      return TIMED_OUT;
    case 'UND_ERR_SOCKET':
      // undici reports an unparseable status line or an unrequested 101
      // as a socket error with these messages; everything else under this
      // code is the connection dying before the response.
      return err.message === 'bad response' || err.message === 'bad upgrade' ? MALFORMED : UNREACHABLE;
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return MALFORMED;
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      // undici refused what the client sent (a header value, a body shorter
      // than its Content-Length): the request, not the upstream, is at fault.
      return REFUSED_REQUEST;
    case 'UND_ERR_DESTROYED':
    case 'UND_ERR_CLOSED':
      return CLOSING;
    default:
      // Errno codes (ECONNREFUSED, ECONNRESET, ENOTFOUND, EAI_AGAIN,
      // EHOSTUNREACH, ...) and TLS failures (ERR_TLS_*, ERR_SSL_*,
      // CERT_HAS_EXPIRED, ...): the upstream could not be reached.
      return UNREACHABLE;
  }
}

/** The origin-form path to send upstream, or null for a target we do not forward. */
function requestPath(url: string | undefined): string | null {
  if (url === undefined || url.length === 0) return null;
  if (url.charCodeAt(0) === 0x2f /* "/" */) return url;
  // RFC 9112 §3.2.2: a server must accept absolute-form; only its path and
  // query go upstream, never the authority the client chose.
  if (ABSOLUTE_FORM.test(url)) {
    try {
      const parsed = new URL(url);
      return parsed.pathname + parsed.search;
    } catch {
      return null;
    }
  }
  // Asterisk-form (OPTIONS *) and authority-form (CONNECT) have no path to
  // map onto a target's prefix.
  return null;
}

/**
 * One client request and its attempts upstream. It is undici's dispatch
 * handler, so the response arrives as callbacks without an intermediate
 * Readable.
 */
class ProxyExchange implements Dispatcher.DispatchHandler {
  readonly #shared: ProxyShared;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #ctx: RequestContext;
  readonly #method: string;
  #path = '';
  #hasBody = false;
  /** Flat [name, value, ...] list; slot 1 holds the Host value, set per attempt. */
  #headers: string[] = [];
  /** The target of the attempt in flight; null between attempts. */
  #target: UpstreamTarget | null = null;
  #controller: Dispatcher.DispatchController | null = null;
  /** Targets already tried, allocated only when a retry happens. */
  #tried: Set<UpstreamTarget> | null = null;
  /** The upstream sent something: from now on a retry could repeat a side effect. */
  #upstreamAnswered = false;
  /** The client's response is finished or abandoned; nothing more may be written. */
  #settled = false;
  #drainHooked = false;

  constructor(shared: ProxyShared, req: IncomingMessage, res: ServerResponse, ctx: RequestContext) {
    this.#shared = shared;
    this.#req = req;
    this.#res = res;
    this.#ctx = ctx;
    this.#method = req.method ?? 'GET';
  }

  start(): void {
    if (REFUSED_METHODS.has(this.#method)) {
      this.#answer('METHOD_NOT_ALLOWED', this.#method, PROXY_ALLOW);
      return;
    }
    const path = requestPath(this.#req.url);
    if (path === null) {
      this.#answer('BAD_PATH', 'request-target not in origin-form');
      return;
    }
    this.#path = path;
    this.#buildRequestHeaders();
    this.#res.on('close', this.#onClientClose);
    const now = Date.now();
    // A balancer always yields a target on the first attempt.
    const target = this.#shared.balancer.select(null, now)!;
    if (target.isDown(now)) this.#ctx.note('upstream.all_down', target.label);
    this.#dispatch(target);
  }

  #buildRequestHeaders(): void {
    const incoming = this.#req.headers;
    const ctx = this.#ctx;
    const listed = connectionListedHeaders(incoming.connection);
    const out: string[] = ['host', ''];
    for (const name of Object.keys(incoming)) {
      if (HOP_BY_HOP_HEADERS.has(name) || PROXY_OWNED_REQUEST_HEADERS.has(name)) continue;
      if (listed?.has(name)) continue;
      const value = incoming[name];
      if (typeof value === 'string') {
        out.push(name, value);
      } else if (value !== undefined) {
        for (const item of value) out.push(name, item);
      }
    }

    // The body is forwarded as a stream only when the client sent one; the
    // Node parser has already rejected conflicting or malformed framing
    // (RFC 9112 §6.3), so Content-Length here is a plain digit string.
    const contentLength = incoming['content-length'];
    if (incoming['transfer-encoding'] !== undefined) {
      // Chunked from the client, and any Content-Length beside it ignored
      // (RFC 9112 §6.3). undici frames it afresh: chunked, or with a length
      // when the whole body has already arrived.
      this.#hasBody = true;
    } else if (contentLength !== undefined && contentLength !== '0') {
      this.#hasBody = true;
      out.push('content-length', contentLength);
    } else if (hasBodyWithoutLength(this.#req)) {
      // HTTP/2 DATA frames without a Content-Length: undici sends them on chunked.
      this.#hasBody = true;
    }

    out.push(...forwardingHeaders(incoming, ctx, listed));
    this.#headers = out;
  }

  #dispatch(target: UpstreamTarget): void {
    const clientHost = this.#req.headers.host;
    this.#headers[1] = this.#shared.preserveHost && clientHost !== undefined && clientHost !== '' ? clientHost : target.hostHeader;
    this.#target = target;
    this.#controller = null;
    target.active++;
    const options: DispatchOptions = {
      path: target.pathPrefix === '' ? this.#path : target.pathPrefix + this.#path,
      method: this.#method,
      // undici copies the header list when it builds the request, so slot 1
      // can be rewritten for the next attempt.
      headers: this.#headers,
      body: this.#hasBody ? this.#req : null,
    };
    if (target.servername !== undefined) options.servername = target.servername;
    if (this.#shared.closeUpstreamConnections) options.reset = true;
    target.pool.dispatch(options, this);
  }

  /** The attempt is over: the target has one request fewer in flight. */
  #release(): UpstreamTarget | null {
    const target = this.#target;
    if (target !== null) {
      target.active--;
      this.#target = null;
    }
    return target;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // The client left while the request waited in the pool's queue.
    if (this.#settled) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.#upstreamAnswered = true;
    // Interim 1xx responses are not forwarded: the Node server already sent
    // its own 100 Continue, and 103 Early Hints are only advisory.
    if (statusCode < 200 || this.#settled) return;
    const target = this.#target;
    if (target !== null) {
      this.#shared.balancer.markSuccess(target);
      this.#ctx.note('upstream.response', target.label);
    }
    try {
      this.#res.writeHead(statusCode, endToEndResponseHeaders(headers));
    } catch (err) {
      // Node refused a field name or value that llhttp let through: the
      // response cannot be relayed faithfully.
      this.#settled = true;
      this.#ctx.note('upstream.error', `${target?.label ?? ''} ${errorCode(err as Error) ?? 'ERR_INVALID_HEADER'}`);
      this.#answer('UPSTREAM_BAD_RESPONSE', target?.label);
      controller.abort(err as Error);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    // Backpressure: stop reading from the upstream socket until the client
    // has taken what is buffered (the 'drain' listener resumes it).
    if (!this.#res.write(chunk)) {
      controller.pause();
      if (!this.#drainHooked) {
        this.#drainHooked = true;
        this.#res.on('drain', this.#onClientDrain);
      }
    }
  }

  onResponseEnd(): void {
    this.#release();
    if (this.#settled) return;
    this.#settled = true;
    // Upstream trailers are dropped: Trailer is hop-by-hop and a client
    // that did not send "TE: trailers" must not receive them (RFC 9110 §6.5.1).
    this.#res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    const target = this.#release();
    if (this.#settled) return;
    const res = this.#res;
    const code = errorCode(err) ?? err.name;
    const label = target?.label ?? '';

    // The request body failed on the client's side (it disconnected or sent
    // broken chunked framing mid-body): not the upstream's fault.
    if (this.#hasBody && this.#req.errored) {
      this.#settled = true;
      this.#ctx.note('upstream.client_error', `${label} ${code}`);
      this.#answer('BAD_REQUEST', label);
      return;
    }

    const outcome = classify(err);
    this.#ctx.note('upstream.error', `${label} ${code}`);

    if (res.headersSent) {
      // The status line is out: the only honest signal left is a cut
      // connection, so the client sees a truncated response, not a short one.
      this.#settled = true;
      res.destroy();
      return;
    }

    if (outcome.upstreamFailure && target !== null) {
      const now = Date.now();
      if (this.#shared.balancer.markFailure(target, now)) this.#ctx.note('upstream.marked_down', label);
      if (this.#retryable()) {
        (this.#tried ??= new Set()).add(target);
        const next = this.#shared.balancer.select(this.#tried, now);
        if (next !== null) {
          this.#ctx.note('upstream.retry', next.label);
          this.#dispatch(next);
          return;
        }
      }
    }

    this.#settled = true;
    this.#answer(outcome.code, label);
  }

  /** nginx proxy_next_upstream: only safe methods without a body, and only before any response byte. */
  #retryable(): boolean {
    return !this.#hasBody && !this.#upstreamAnswered && RETRYABLE_METHODS.has(this.#method);
  }

  /** Answer from the error catalogue and record it for the log. */
  #answer(code: ErrorCode, detail: string | undefined, headers?: OutgoingHttpHeaders): void {
    const res = this.#res;
    this.#ctx.note(ERRORS[code].event, detail);
    if (res.destroyed) return;
    // A request body that was not read to its end leaves the rest of it on
    // the connection, where it would be parsed as the next request.
    if (this.#hasBody && !this.#req.complete) res.shouldKeepAlive = false;
    try {
      sendError(res, code, headers);
    } catch {
      // This runs inside undici's callbacks, where a throw would surface as
      // an 'error' on the pool; a response that cannot be written is cut.
      res.destroy();
    }
  }

  readonly #onClientDrain = (): void => {
    this.#controller?.resume();
  };

  /**
   * The response closed: either we finished it, or the client went away
   * first, in which case the upstream request is aborted so its socket is
   * destroyed rather than left streaming into nowhere.
   */
  readonly #onClientClose = (): void => {
    if (this.#settled) return;
    this.#settled = true;
    const target = this.#target;
    this.#ctx.note('upstream.client_aborted', target?.label);
    // Before onRequestStart there is no controller yet; onRequestStart
    // aborts instead when it sees the exchange settled.
    this.#controller?.abort(new Error('client closed the connection'));
  };
}
