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
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { ProxyBackendSpec } from '../../config/types.js';
import { ERRORS, sendError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { hasBodyWithoutLength, http2Path } from '../http2-request.js';
import { upgradeOf } from '../websocket/handshake.js';
import type { WebSocketTunnels } from '../websocket/tunnel.js';
import { completeUpgrade, upstreamKey, type WebSocketUpgrade } from '../websocket/upstream.js';
import { ADDRESS_HEADERS, forwardingHeaders } from './forwarding.js';
import { HealthChecks } from './health-checks.js';
import { HOP_BY_HOP_HEADERS, connectionListedHeaders, endToEndResponseHeaders, forwardableTrailers } from './hop-by-hop.js';
import type { RequestContext, RequestHandler } from './types.js';
import { classify, errorCode, failureDetail } from './upstream-errors.js';
import { UpstreamTarget } from './upstream-target.js';
import { UpstreamBalancer } from './upstreams.js';

export type ProxyBackend = ProxyBackendSpec;

/** A failing target is logged at most once per this long per kind of failure (the access log has every request). */
const FAILURE_LOG_INTERVAL_MS = 10_000;

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

interface ProxyShared {
  readonly balancer: UpstreamBalancer<UpstreamTarget>;
  readonly preserveHost: boolean;
  /** keepalive = false: ask for `Connection: close` on every upstream request. */
  readonly closeUpstreamConnections: boolean;
  /** protocol = "h2": requests go over HTTP/2 (TE: trailers passes; gRPC needs it, RFC 9113 §8.2.2). */
  readonly http2: boolean;
  /** WebSocket upgrades are proxied (the route stage refuses them otherwise). */
  readonly webSocket: boolean;
  /** Where tunnels live once both sides switched; null: upgrades are refused (no worker to drain them). */
  readonly tunnels: WebSocketTunnels | null;
  /** Says, at most once per FAILURE_LOG_INTERVAL_MS per target and kind, why a target failed. */
  readonly logFailure: (detail: string, kind: string) => void;
}

/** What the proxy handler needs of its worker. */
export interface ProxyHandlerOptions {
  /** Where failing targets and health changes are logged; null: nowhere (tests). */
  readonly log?: Logger | null;
  /** The worker's open WebSocket tunnels (drained with it). */
  readonly tunnels?: WebSocketTunnels | null;
}

/**
 * Build the reverse proxy handler for one proxy backend. Pools connect
 * lazily, on the first request to each target; health checks, when
 * configured, start at once.
 */
export function createProxyHandler(backend: ProxyBackend, options: ProxyHandlerOptions = {}): RequestHandler {
  const log = options.log ?? null;
  const targets = backend.targets.map((target) => new UpstreamTarget(target, backend));
  const loggedAt = new Map<string, number>();
  const shared: ProxyShared = {
    balancer: new UpstreamBalancer(targets, backend.loadBalancing, backend),
    preserveHost: backend.preserveHost,
    closeUpstreamConnections: !backend.keepAlive,
    http2: backend.protocol === 'h2',
    webSocket: backend.webSocket,
    tunnels: options.tunnels ?? null,
    logFailure(detail, kind) {
      if (log === null) return;
      const now = Date.now();
      const key = `${kind} ${detail}`;
      if (now - (loggedAt.get(key) ?? -Infinity) < FAILURE_LOG_INTERVAL_MS) return;
      if (loggedAt.size > 1000) loggedAt.clear();
      loggedAt.set(key, now);
      log.warn({ event: kind, detail }, 'upstream request failed');
    },
  };
  const health = backend.healthCheck === null ? null : new HealthChecks(targets, backend.healthCheck, log);
  health?.start();
  let closing: Promise<void> | null = null;
  return {
    handle(req, res, ctx) {
      new ProxyExchange(shared, req, res, ctx).start();
    },
    // Graceful: requests in flight finish (each bounded by the upstream
    // timeouts), new ones are refused with 502; the master's shutdown
    // timeout bounds the whole drain. Idempotent, as undici's close is not.
    close() {
      health?.close();
      closing ??= Promise.all(targets.map((target) => target.close())).then(() => undefined);
      return closing;
    },
  };
}

/** Whether a TE field lists "trailers" (RFC 9110 §10.1.4). */
function acceptsTrailers(te: string | string[] | undefined): boolean {
  if (Array.isArray(te)) return te.some((field) => acceptsTrailers(field));
  return te?.split(',').some((coding) => coding.split(';', 1)[0]!.trim().toLowerCase() === 'trailers') ?? false;
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
  /** A WebSocket opening handshake being proxied, or null for any other request. */
  #webSocket: WebSocketUpgrade | null = null;
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
    const upgrade = upgradeOf(this.#req);
    if (upgrade.kind === 'websocket') {
      // The handshake was checked by the upgrade stage, the route's permission by the route stage.
      if (!this.#shared.webSocket || this.#shared.tunnels === null) {
        this.#answer('UPGRADE_REFUSED', 'WebSocket is not proxied here');
        return;
      }
      const key = upgrade.http2 ? upstreamKey() : this.#req.headers['sec-websocket-key']!;
      this.#webSocket = { http2: upgrade.http2, key };
    } else if (REFUSED_METHODS.has(this.#method)) {
      this.#answer('METHOD_NOT_ALLOWED', this.#method, PROXY_ALLOW);
      return;
    }
    // RFC 8441 §4: an extended CONNECT names its target in :path.
    const path = requestPath(this.#webSocket?.http2 ? (http2Path(this.#req) ?? undefined) : this.#req.url);
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
    if (this.#webSocket !== null) {
      // An opening handshake has no body (the upgrade stage saw to it); what follows it is frames.
      // Over HTTP/2 the key is ours: RFC 8441 §5 leaves it out, HTTP/1.1 upstreams need one.
      if (this.#webSocket.http2) out.push('sec-websocket-key', this.#webSocket.key);
    } else if (incoming['transfer-encoding'] !== undefined) {
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
    // TE is hop-by-hop, but "trailers" in it says the client takes trailer
    // fields, which this proxy relays: gRPC servers require it (RFC 9113
    // §8.2.2 allows exactly this value over HTTP/2).
    if (this.#webSocket === null && acceptsTrailers(incoming.te)) out.push('te', 'trailers');
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
      method: this.#webSocket === null ? this.#method : 'GET',
      // undici copies the header list when it builds the request, so slot 1
      // can be rewritten for the next attempt.
      headers: this.#headers,
      body: this.#hasBody ? this.#req : null,
    };
    if (target.servername !== undefined) options.servername = target.servername;
    if (this.#shared.closeUpstreamConnections) options.reset = true;
    if (this.#webSocket !== null) {
      // RFC 6455 §4.1 upstream, over HTTP/1.1 whatever the backend's protocol: undici adds Connection and Upgrade.
      options.upgrade = 'websocket';
      target.upgradePool.dispatch(options, this);
      return;
    }
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

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.#release();
    if (this.#settled) return;
    this.#settled = true;
    // Trailer fields (gRPC's grpc-status) go to a client that said it takes
    // them ("TE: trailers", as every gRPC client does), without the fields a
    // trailer may not carry (RFC 9110 §6.5.1). Over HTTP/1.1 Node sends them
    // only in a chunked response: one with a Content-Length has no place for them.
    if (acceptsTrailers(this.#req.headers.te)) {
      const forwarded = forwardableTrailers(trailers);
      if (Object.keys(forwarded).length > 0) this.#res.addTrailers(forwarded);
    }
    this.#res.end();
  }

  /**
   * The upstream switched protocols (101). For a WebSocket handshake the
   * tunnel opens (websocket/upstream.ts); undici calls this for nothing else.
   */
  onRequestUpgrade(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#upstreamAnswered = true;
    const target = this.#release();
    const label = target?.label ?? '';
    if (this.#settled || this.#webSocket === null || this.#shared.tunnels === null) {
      socket.destroy();
      return;
    }
    this.#settled = true;
    const opened = completeUpgrade({
      upgrade: this.#webSocket,
      req: this.#req,
      res: this.#res,
      clientIp: this.#ctx.clientIp,
      statusCode,
      headers,
      socket,
      tunnels: this.#shared.tunnels,
    });
    if (!opened.ok) {
      socket.destroy();
      this.#ctx.note('upstream.error', `${label} ${opened.problem}`);
      this.#shared.logFailure(`${label} ${opened.problem}`, ERRORS.UPSTREAM_BAD_RESPONSE.event);
      this.#answer('UPSTREAM_BAD_RESPONSE', `${label} ${opened.problem}`);
      return;
    }
    if (target !== null) this.#shared.balancer.markSuccess(target);
    this.#ctx.note('upstream.websocket', label);
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
    const detail = failureDetail(label, err);
    this.#ctx.note('upstream.error', detail);

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
    if (outcome.upstreamFailure) this.#shared.logFailure(detail, ERRORS[outcome.code].event);
    this.#answer(outcome.code, detail);
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
