/**
 * HTTP/2 (RFC 9113) on the HTTPS listeners, chosen by ALPN (tls-front.ts);
 * plain-HTTP listeners speak HTTP/1.1 only (no h2c). A stream reaches the
 * same pipeline and handlers as an HTTP/1 request, as a request and a
 * response that offer what those use of IncomingMessage and ServerResponse:
 *
 * - a request whose HEADERS ended the stream (no body, not CONNECT, no
 *   Expect: nearly every request a browser sends) gets objects of our own
 *   over Node's core stream API (http2-request.ts, http2-response.ts);
 * - any other gets Node's compatibility objects (a Readable of the body),
 *   adapted the same way.
 *
 * Either way the request shows the pipeline HTTP/1.1 headers, and the
 * response adds the security headers like the HTTP/1 one and drops
 * connection-specific fields (response-headers.ts).
 *
 * What nghttp2 itself refuses never reaches JavaScript: connection-specific
 * request fields, TE other than "trailers", upper-case names, malformed or
 * missing pseudo-headers, no :authority nor Host (RST_STREAM PROTOCOL_ERROR,
 * RFC 9113 §8.2.2, §8.3); a field whose value holds a control character is
 * dropped (Node asks nghttp2 to ignore invalid fields rather than reset); more
 * streams than max_concurrent_streams once SETTINGS is acknowledged (GOAWAY
 * PROTOCOL_ERROR, which the session reports as an error: audited by the
 * session policy below); header lists past the hard caps below (RST_STREAM
 * ENHANCE_YOUR_CALM). Content-Length is checked against the DATA received.
 *
 * The session policy (Http2Sessions) holds each session to the connection
 * rules HTTP/1 gets from Node's server: max_request_per_connection, idle
 * and slow-header timeouts, a stalled stream's write_timeout, and adds the
 * rapid-reset defence (CVE-2023-44487) and the SETTINGS acknowledgement deadline.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import http2, { constants as h2, type Http2Session, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { CompiledConfig, HeaderPolicy, LimitsSpec } from '../config/types.js';
import { withSuppressed, type Audit } from './audit.js';
import type { ConnectionState } from './connection/watch.js';
import { ERRORS } from './errors.js';
import { BodylessHttp2Request, Http1ViewRequest } from './http2-request.js';
import { findSymbol } from './http2-respond.js';
import { bodylessHttp2ResponseClass, bytesSent } from './http2-response.js';
import type { WorkerMetrics } from './metrics.js';
import { secureHttp2ResponseClass } from './response-headers.js';

/** RFC 9113 §6.5.2: a field counts its name and value octets plus 32. */
const FIELD_OVERHEAD_BYTES = 32;
/** :method, :scheme, :authority, :path. */
const REQUEST_PSEUDO_HEADERS = 4;

/**
 * Rapid reset (CVE-2023-44487): streams a connection may see end in
 * RST_STREAM in a burst — twice max_concurrent_streams, so a client may
 * cancel everything it has open twice in a row (a browser leaving a page) —
 * and how fast that allowance refills: nghttp2's own default rate.
 */
const RESET_BURST_PER_CONCURRENT_STREAM = 2;
const RESET_REFILL_PER_SECOND = 33;
/**
 * nghttp2's own limit on RST_STREAM frames received (Node's streamResetBurst),
 * set above ours. It sees every RST_STREAM, also those of streams Node
 * refused before JavaScript saw them (Node hands JavaScript at most
 * max_concurrent_streams new streams per read), so within one large read it
 * can act first: the session policy then audits the session's end as the
 * rapid reset it was.
 */
const NGHTTP2_RESET_BURST_FACTOR = 4;

export interface Http2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS (max_concurrent_streams). */
  readonly maxConcurrentStreams: number;
  /**
   * Hard caps nghttp2 applies while decoding a header block, before any
   * JavaScript sees the request (RST_STREAM ENHANCE_YOUR_CALM, unaudited):
   * twice what the header-limits stage admits, so every excess up to twice
   * the limit is answered 431 there, with an audit event. The byte cap is
   * also what SETTINGS_MAX_HEADER_LIST_SIZE advertises.
   */
  readonly maxHeaderListPairs: number;
  readonly maxHeaderListBytes: number;
  readonly resetBurst: number;
  readonly resetRefillPerSecond: number;
}

/** The HTTP/2 limits, derived from [security.limits]. */
export function http2Limits(limits: LimitsSpec): Http2Limits {
  const maxHeaderListPairs = 2 * limits.maxHeaders + REQUEST_PSEUDO_HEADERS;
  return {
    maxConcurrentStreams: limits.maxConcurrentStreams,
    maxHeaderListPairs,
    maxHeaderListBytes: 2 * limits.maxHeaderBytes + FIELD_OVERHEAD_BYTES * maxHeaderListPairs,
    resetBurst: RESET_BURST_PER_CONCURRENT_STREAM * limits.maxConcurrentStreams,
    resetRefillPerSecond: RESET_REFILL_PER_SECOND,
  };
}

/**
 * The HTTP/2 server of an HTTPS listener. It never listens: tls-front.ts
 * hands it each TLS connection that negotiated "h2". Server push is off;
 * extended CONNECT (RFC 8441) is offered: WebSocket over HTTP/2 reaches the
 * pipeline as a CONNECT with :protocol (websocket/handshake.ts). Each stream
 * becomes a request and a response (http2Handler, below).
 */
export function createHttp2Server(limits: Http2Limits): http2.Http2Server {
  return http2.createServer({
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListBytes,
      enablePush: false,
      enableConnectProtocol: true,
    },
    maxHeaderListPairs: limits.maxHeaderListPairs,
    streamResetBurst: NGHTTP2_RESET_BURST_FACTOR * limits.resetBurst,
    streamResetRate: limits.resetRefillPerSecond,
  });
}

type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;
type StreamListener = (stream: ServerHttp2Stream, fields: IncomingHttpHeaders, flags: number, rawFields: string[]) => void;

/**
 * What a new stream becomes: a request and a response handed to `handler`
 * (see the file comment for which kind). The compatibility kind is made as
 * Node's own compatibility layer makes it (lib/internal/http2/compat.js,
 * onServerStream), Expect included: "100-continue" is answered 100 before
 * the handler runs, any other expectation 417 (RFC 9110 §10.1.1).
 */
export function http2Handler(
  policy: HeaderPolicy,
  socketOf: (stream: ServerHttp2Stream) => Socket | undefined,
  handler: RequestHandler,
): StreamListener {
  // A stream our response answers has one 'close' listener, the response's, which counts resets after its events.
  const BodylessResponse = bodylessHttp2ResponseClass(policy, spendOnReset);
  const CompatibleResponse = secureHttp2ResponseClass(policy);
  return (stream, fields, _flags, rawFields) => {
    const method = fields[':method'];
    const socket = socketOf(stream);
    if (stream.endAfterHeaders && method !== 'CONNECT' && fields.expect === undefined && socket !== undefined) {
      const req = new BodylessHttp2Request(stream, fields, rawFields, socket);
      handler(req as unknown as IncomingMessage, new BodylessResponse(stream, req) as unknown as ServerResponse);
      return;
    }
    const req = new Http1ViewRequest(stream, fields as http2.IncomingHttpHeaders, undefined as never, rawFields);
    const res = new CompatibleResponse(stream);
    const expectation = fields.expect;
    if (expectation !== undefined && method !== 'CONNECT') {
      if (expectation.toLowerCase() !== '100-continue') {
        res.statusCode = h2.HTTP_STATUS_EXPECTATION_FAILED;
        res.end();
        return;
      }
      res.writeContinue();
    }
    handler(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  };
}

/**
 * The rapid-reset allowance of one connection: a token bucket that every
 * stream ending in RST_STREAM (either side's) spends from.
 */
export class StreamResetBudget {
  #tokens: number;
  #refilledAt = performance.now();
  #lastResetAt = -Infinity;
  /** Streams reset so far on this connection (for the audit line). */
  resets = 0;

  constructor(private readonly limits: Pick<Http2Limits, 'resetBurst' | 'resetRefillPerSecond'>) {
    this.#tokens = limits.resetBurst;
  }

  /** One more stream was reset; false once the allowance is spent. */
  spend(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.limits.resetBurst, this.#tokens + ((now - this.#refilledAt) / 1000) * this.limits.resetRefillPerSecond);
    this.#refilledAt = now;
    this.#lastResetAt = now;
    this.resets += 1;
    this.#tokens -= 1;
    return this.#tokens >= 0;
  }

  /** Whether a stream was reset within the last `ms`. */
  resetWithinMs(ms: number): boolean {
    return performance.now() - this.#lastResetAt < ms;
  }
}

/**
 * HTTP/2 between requests: more than this many bytes read without a request
 * to show for them is a header block in progress (PINGs, SETTINGS and
 * WINDOW_UPDATEs of an idle client take far less), held to header_read_timeout.
 */
const H2_IDLE_CONTROL_BYTES = 1024;
/** A session nghttp2 ends this soon after a stream reset was seen is taken to have ended for its resets. */
const RESET_ATTRIBUTION_MS = 1000;

/** A session's bookkeeping (Http2Sessions.adopt), which each of its streams carries to its 'close' and 'timeout'. */
interface SessionWatch {
  readonly state: ConnectionState;
  readonly session: ServerHttp2Session;
  readonly budget: StreamResetBudget;
  streams: number;
  rapidReset: boolean;
  /** Audits the session as a rapid reset and closes it (GOAWAY ENHANCE_YOUR_CALM). */
  readonly refuse: (how: string) => void;
  /** Audits a stream stalled behind its flow-control window and resets it (RST_STREAM CANCEL). */
  readonly stalled: (stream: ServerHttp2Stream) => void;
  /** Streams seen with their answer queued by the sweep: the bytes sent then, and since when none moved. */
  marks: Map<ServerHttp2Stream, { sent: number; since: number }> | null;
}

const SESSION_WATCH = Symbol('sessionWatch');
type WatchedStream = ServerHttp2Stream & { [SESSION_WATCH]?: SessionWatch };

/*
 * The per-stream listeners are these module functions, the same for every
 * stream (no closure per stream): the stream carries its session's watch.
 */

/** A stream closed: one ended in RST_STREAM (either side's) spends from its session's allowance. */
function spendOnReset(this: WatchedStream): void {
  const watch = this[SESSION_WATCH];
  if (watch === undefined) return;
  // Streams torn down with the session carry its code, not a reset of their own.
  if (
    watch.state.refused ||
    watch.rapidReset ||
    watch.session.destroyed ||
    this.rstCode === undefined ||
    this.rstCode === h2.NGHTTP2_NO_ERROR
  )
    return;
  if (!watch.budget.spend()) watch.refuse('GOAWAY ENHANCE_YOUR_CALM');
}

/** Whether a stream's answer is still queued behind its flow-control window: only then can it stall. */
function answerQueued(stream: ServerHttp2Stream): boolean {
  return !stream.destroyed && stream.bufferSize !== 0;
}

/** Nothing moved on a stream for write_timeout: stalled if its answer is still queued. */
function resetIfStalled(this: WatchedStream): void {
  if (answerQueued(this)) this[SESSION_WATCH]?.stalled(this);
}

/** Node's own key of a session's state (lib/internal/http2/core.js), found on the first session; null on a Node that has none. */
let sessionStateKey: symbol | null | undefined;

/**
 * The open streams of `session`, from Node's own table of them
 * (session[kState].streams; test/unit/http2-exchange.test.ts pins it), or
 * null when this Node keeps none there: its streams are then timed one by one.
 */
export function openStreams(session: ServerHttp2Session): Map<number, ServerHttp2Stream> | null {
  if (sessionStateKey === undefined) sessionStateKey = findSymbol(session, 'state') ?? null;
  if (sessionStateKey === null) return null;
  // A Map of Node's own making (its SafeMap): not an instance of this realm's Map, so asked for what it does.
  const streams = (session as unknown as Record<symbol, { streams?: Partial<Map<number, ServerHttp2Stream>> } | undefined>)[sessionStateKey]
    ?.streams;
  return typeof streams?.get === 'function' && typeof streams.values === 'function' ? (streams as Map<number, ServerHttp2Stream>) : null;
}

/** Takes one TLS connection that negotiated "h2", with its bookkeeping, into an HTTP/2 server. */
export type Http2Entry = (socket: Socket, state: ConnectionState) => void;

/** The session policy of every HTTP/2 connection of one worker (see the file comment). */
export class Http2Sessions {
  readonly limits: Http2Limits;
  /** HTTP/2 session -> its bookkeeping and its connection (a session only shows a proxy of its socket). */
  readonly #sessions = new WeakMap<Http2Session, SessionWatch>();
  /** The connection whose session Node is creating right now (see adopt). */
  #adopting: ConnectionState | null = null;

  constructor(
    private readonly config: CompiledConfig,
    private readonly log: Logger,
    private readonly metrics: WorkerMetrics,
    private readonly audit: Audit,
    /** Refused connections are audited at most once a second per client and event (audit.ts). */
    private readonly refusalThrottle: (key: string) => number | null,
    private readonly isDraining: () => boolean,
  ) {
    this.limits = http2Limits(config.limits);
  }

  /**
   * The HTTP/2 server of one HTTPS listener, and the entry its TLS front
   * hands each "h2" connection to. Every stream goes to `handler`, CONNECT
   * included: an extended CONNECT (RFC 8441) can become a WebSocket, and any
   * other CONNECT is refused by the pipeline, audited.
   */
  server(handler: RequestHandler): Http2Entry {
    const server = createHttp2Server(this.limits);
    server.on(
      'stream',
      http2Handler(this.config.responseHeaders, (stream) => this.stateOf(stream)?.socket, handler),
    );
    server.on('session', (session: ServerHttp2Session) => this.adopt(session));
    return (socket, state) => {
      // Node creates the session inside emit('connection') and announces it, synchronously, with 'session'.
      this.#adopting = state;
      try {
        server.emit('connection', socket);
      } finally {
        this.#adopting = null;
      }
    };
  }

  /** The connection a stream's session runs on. */
  stateOf(stream: ServerHttp2Stream): ConnectionState | undefined {
    return stream.session === undefined ? undefined : this.#sessions.get(stream.session)?.state;
  }

  /**
   * A session that carried no byte either way for idle_timeout has been
   * closed by the connection sweep before it asks here (Node's own session
   * timer, server.setTimeout, is refreshed several times per stream, which
   * cost ~8 % of a bare node:http2 server's CPU per request:
   * docs/benchmark.md).
   *
   * An HTTP/2 session with no request in flight: closed with GOAWAY once
   * idle for keepalive_timeout (HTTP/1's keep-alive rule); cut as a slow
   * client when it has read more than control frames account for without a
   * request to show for them for header_read_timeout (a header block
   * trickled in, which nghttp2 holds where no request exists yet). With
   * requests in flight, its stalled streams are reset (resetStalled). True
   * when the session was closed. Called by the connection sweep (connection/watch.ts).
   */
  sweep(state: ConnectionState, session: ServerHttp2Session, now: number): boolean {
    if (session.destroyed) return false;
    // idle_timeout, requests in flight or not, is the connection sweep's, as for HTTP/1.
    if (state.inFlight > 0) {
      const watch = this.#sessions.get(session);
      if (watch !== undefined) this.resetStalled(watch, now);
      return false;
    }
    if (session.closed) return false;
    const idleMs = now - state.idleSince;
    const pendingBytes = state.socket.bytesRead - state.bytesReadAtIdle;
    if (pendingBytes > H2_IDLE_CONTROL_BYTES && idleMs >= this.config.timeouts.headerReadTimeoutMs) {
      this.metrics.rejection(ERRORS.SLOW_CLIENT.event);
      this.audit({
        event: ERRORS.SLOW_CLIENT.event,
        clientIp: state.peerIp,
        detail: `HTTP/2: ${pendingBytes} bytes and no request in ${Math.round(idleMs)} ms`,
      });
      this.closeSession(state, session, h2.NGHTTP2_ENHANCE_YOUR_CALM);
      return true;
    }
    if (idleMs >= this.config.timeouts.keepAliveTimeoutMs) {
      session.close();
      return true;
    }
    return false;
  }

  /**
   * The slow-read defence of one stream: its answer can stall behind its
   * own flow-control window while the connection moves. A stream whose
   * queued answer has not moved for write_timeout is reset (RST_STREAM
   * CANCEL, audited; the connection serves on). A stream merely waiting
   * (for an upstream, for the client's body) has nothing queued, and is
   * left to those timeouts. Streams answered by this server's own response
   * (http2-response.ts) are judged here, once a second, by the bytes that
   * left their queue: no timer per stream, refreshed on every frame, as
   * Node's stream.setTimeout would keep. Node's compatibility responses
   * keep that timer (adopt).
   */
  private resetStalled(watch: SessionWatch, now: number): void {
    const streams = openStreams(watch.session);
    if (streams === null) return;
    for (const stream of streams.values()) {
      const sent = answerQueued(stream) ? bytesSent(stream) : null;
      if (sent === null) {
        watch.marks?.delete(stream);
        continue;
      }
      watch.marks ??= new Map();
      const mark = watch.marks.get(stream);
      if (mark === undefined || mark.sent !== sent) watch.marks.set(stream, { sent, since: now });
      else if (now - mark.since >= this.config.timeouts.writeTimeoutMs) {
        watch.marks.delete(stream);
        watch.stalled(stream);
      }
    }
    // Streams that closed since they were marked.
    if (watch.marks !== null) for (const stream of watch.marks.keys()) if (stream.destroyed) watch.marks.delete(stream);
  }

  /**
   * A new HTTP/2 session: its streams are counted against
   * max_request_per_connection (then GOAWAY: the last one is served), each
   * is held to write_timeout while its answer is queued, and every stream
   * ending in RST_STREAM spends from the rapid-reset allowance
   * (CVE-2023-44487); once it is spent the session gets GOAWAY
   * ENHANCE_YOUR_CALM and is closed, with an audit event. A protocol error
   * nghttp2 found (too many concurrent streams, a flood of invalid frames)
   * is audited too, and so is a client that does not acknowledge our
   * SETTINGS within header_read_timeout (GOAWAY SETTINGS_TIMEOUT).
   */
  private adopt(session: ServerHttp2Session): void {
    const state = this.#adopting;
    // Sessions come only through server()'s entry, which sets #adopting around their creation.
    if (state === null) {
      session.destroy();
      return;
    }
    state.session = session;
    // RFC 9113 §6.5.3: nghttp2 applies our SETTINGS (the header list cap among them) only once the client
    // acknowledges them; one that does not within header_read_timeout is cut.
    const settingsDeadline = setTimeout(() => {
      if (session.closed || session.destroyed) return;
      this.auditConnection(
        'connection.settings_timeout',
        state,
        `SETTINGS not acknowledged within ${this.config.timeouts.headerReadTimeoutMs} ms`,
      );
      this.closeSession(state, session, h2.NGHTTP2_SETTINGS_TIMEOUT);
    }, this.config.timeouts.headerReadTimeoutMs);
    settingsDeadline.unref();
    session.once('localSettings', () => clearTimeout(settingsDeadline));
    session.once('close', () => clearTimeout(settingsDeadline));
    const watch: SessionWatch = {
      state,
      session,
      budget: new StreamResetBudget(this.limits),
      streams: 0,
      rapidReset: false,
      refuse: (how) => {
        watch.rapidReset = true;
        this.auditConnection('connection.rapid_reset', state, `${watch.budget.resets} of ${watch.streams} streams reset; ${how}`);
        if (!session.destroyed) this.closeSession(state, session, h2.NGHTTP2_ENHANCE_YOUR_CALM);
      },
      stalled: (stream) => {
        this.audit({
          event: 'response.write_timeout',
          clientIp: state.peerIp,
          detail: `HTTP/2 stream ${stream.id}: ${stream.bufferSize} bytes queued`,
        });
        stream.close(h2.NGHTTP2_CANCEL);
      },
      marks: null,
    };
    this.#sessions.set(session, watch);
    const writeTimeoutMs = this.config.timeouts.writeTimeoutMs;
    // Without Node's table of open streams, the sweep cannot find them: each is timed on its own.
    const swept = openStreams(session) !== null;
    session.on('stream', (stream: ServerHttp2Stream) => {
      watch.streams += 1;
      if (watch.streams >= this.config.limits.maxRequestsPerConnection || this.isDraining()) session.close();
      (stream as WatchedStream)[SESSION_WATCH] = watch;
      // A stream this server's response answers (the handler made it before this listener runs) counts
      // its reset in the response's 'close' listener (http2Handler); any other in a listener of its own.
      const ours = bytesSent(stream) !== null;
      if (!ours) stream.on('close', spendOnReset);
      // Held to write_timeout (resetStalled): by the sweep when this server's response answers the
      // stream, else by Node's timer on the stream.
      if (swept && ours) return;
      stream.setTimeout(writeTimeoutMs);
      stream.on('timeout', resetIfStalled);
    });
    session.on('error', (error: NodeJS.ErrnoException) => {
      const ip = state.peerIp;
      if (state.refused || error.code === 'ECONNRESET' || error.code === 'EPIPE') {
        this.log.debug({ event: 'connection.reset', clientIp: ip, code: error.code }, 'HTTP/2 session ended');
        return;
      }
      // Deferred past the streams' 'close' events (next tick), so their resets are counted first.
      setImmediate(() => {
        if (watch.rapidReset) return;
        // nghttp2 ended the session while streams were being reset: its own reset limit (streamResetBurst)
        // acted before ours could; it sees every RST_STREAM, including those of streams Node refused before
        // JavaScript saw them, so its limit can be reached first within one read.
        if (watch.budget.resetWithinMs(RESET_ATTRIBUTION_MS)) {
          watch.refuse(`ended by nghttp2 (${error.message})`);
          return;
        }
        this.auditConnection('connection.protocol_error', state, `${error.code ?? ''} ${error.message}`.trim());
      });
    });
  }

  /**
   * An HTTP/2 connection refused for cause: counted, and audited at most once
   * a second per client and event (each new connection can draw one).
   */
  private auditConnection(event: string, state: ConnectionState, detail: string): void {
    this.metrics.rejection(event);
    const ip = state.peerIp;
    const suppressed = this.refusalThrottle(`${event} ${ip}`);
    if (suppressed !== null) this.audit({ event, clientIp: ip, detail: withSuppressed(detail, suppressed) });
  }

  /** GOAWAY with `code` and the connection closed: the client is at fault, and was audited. */
  private closeSession(state: ConnectionState, session: ServerHttp2Session, code: number): void {
    state.refused = true;
    // The error is only for the session's 'error' event, which `refused` quiets; `code` goes in the GOAWAY.
    session.destroy(new Error('closed by the server'), code);
  }
}
