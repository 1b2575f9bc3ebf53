/**
 * The HTTP servers of one worker, one per inherited listening socket. The
 * worker never binds: it calls listen() on the bound socket the master sent.
 */
import http from 'node:http';
import { constants as h2, type Http2Server, type Http2Session, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type tls from 'node:tls';
import net, { type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { CompiledConfig, ListenerSpec, Protocol } from '../config/types.js';
import { CidrSet, clientKey } from '../net/cidr.js';
import type { CertificateMaterial } from '../tls/material.js';
import { AcmeChallenges } from './acme-challenges.js';
import { createAudit, createAuditThrottle, withSuppressed, type Audit } from './audit.js';
import type { MasterPort } from './master-link.js';
import { WorkerMetrics } from './metrics.js';
import { loadDashboardAssets } from './dashboard/assets.js';
import { createDashboardServer } from './dashboard/server.js';
import { peerAddress, setProxiedSource } from './connection-peer.js';
import { ERRORS, rawErrorResponse, type ErrorCode } from './errors.js';
import { createHttp2Server, http2Limits, http2Stream, StreamResetBudget, type Http2Limits } from './http2.js';
import { TlsFront, type TlsMaterial } from './tls-front.js';
import { createPipeline, type Pipeline, type PipelineVariant } from './pipeline/index.js';
import { handOver, readProxyHeader } from './pipeline/proxy-protocol.js';
import { policyHeaders, secureResponseClass } from './pipeline/response-headers.js';

/** How often Node checks header/request timeouts; its default (30 s) lets slow clients linger. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/**
 * While draining, a keep-alive connection is closed once it has been idle
 * this long. Closing an idle connection races with a client that is sending
 * its next request at that moment (RFC 9112 §9.6); a busy client sends within
 * this window and gets `Connection: close` on its answer instead, so only
 * connections that were idle anyway (the same race as keepalive_timeout) are
 * cut. Node's own server.close() closes every idle connection at once.
 */
const DRAIN_IDLE_CLOSE_MS = 1000;
const DRAIN_SWEEP_MS = 250;

interface ConnectionState {
  /** The TCP socket, or over TLS the TLS socket the requests arrive on. */
  readonly socket: Socket;
  readonly protocol: Protocol;
  /** The HTTP/2 session on this connection, or null for HTTP/1. */
  session: ServerHttp2Session | null;
  /** We closed it for cause (already audited): the session's own error is not news. */
  refused: boolean;
  inFlight: number;
  idleSince: number;
  /** Slowloris defence: socket.bytesRead when the last request ended, and when the next head began arriving. */
  bytesReadAtIdle: number;
  headStartedAt: number | null;
  /** Slow-read defence: bytes written at the last sweep, and since when nothing moved. */
  bytesWrittenAtSweep: number;
  stalledSince: number | null;
}

/** How long a metrics scrape's text is reused. */
const SCRAPE_CACHE_MS = 1000;

/** How often connections are swept for slow heads (min_data_rate) and stalled writes (write_timeout). */
const CONNECTION_SWEEP_MS = 1000;
/** A head gets this long before its data rate counts (TCP slow start, a client's think time). */
const HEAD_RATE_GRACE_MS = 1000;
/**
 * HTTP/2 between requests: more than this many bytes read without a request
 * to show for them is a header block in progress (PINGs, SETTINGS and
 * WINDOW_UPDATEs of an idle client take far less), held to header_read_timeout.
 */
const H2_IDLE_CONTROL_BYTES = 1024;
/** A session nghttp2 ends this soon after a stream reset was seen is taken to have ended for its resets. */
const RESET_ATTRIBUTION_MS = 1000;

/** Options of a WorkerServer beyond its config. */
export interface WorkerServerOptions {
  /** Certificates, keys and session ticket key from the master; null without TLS. */
  readonly tls?: TlsMaterial | null;
  /** The ACME challenges the master publishes (ACME_CHALLENGES). */
  readonly challenges?: AcmeChallenges;
  readonly pipelineVariant?: PipelineVariant;
}

export class WorkerServer {
  /** What accepts: the HTTP servers, or the PROXY protocol front of each. */
  private readonly listeners: net.Server[] = [];
  private readonly connections = new Map<Socket, ConnectionState>();
  private readonly pipeline: Pipeline;
  private readonly metrics: WorkerMetrics;
  /** The TLS side of the HTTPS listeners, or null without TLS. */
  private readonly tlsFront: TlsFront | null;
  private readonly h2: Http2Limits;
  /** HTTP/2 session -> its connection (a session only shows a proxy of its socket). */
  private readonly sessions = new WeakMap<Http2Session, ConnectionState>();
  /** The connection whose session Node is creating right now (see adoptSession). */
  private adopting: ConnectionState | null = null;
  private scraped: { at: number; text: Promise<string> } | null = null;
  private readonly writeSweep: NodeJS.Timeout;
  private proxyTrust: CidrSet | null = null;
  private readonly whitelist: CidrSet;
  private readonly blacklist: CidrSet;
  /** Proxies whose forwarding headers are believed: many clients share their address. */
  private readonly forwardingProxies: CidrSet;
  /** Refused connections are audited at most once a second per client. */
  private readonly refusalThrottle = createAuditThrottle();
  private readonly audit: Audit;
  private draining = false;

  constructor(
    private readonly config: CompiledConfig,
    private readonly log: Logger,
    private readonly link: MasterPort,
    options: WorkerServerOptions = {},
  ) {
    const challenges = options.challenges ?? new AcmeChallenges(log);
    this.metrics = new WorkerMetrics(link, () => this.connections.size);
    this.pipeline = createPipeline(config, log, link, this.metrics, challenges, options.pipelineVariant ?? 'full');
    this.tlsFront =
      config.tls !== null && options.tls != null ? new TlsFront(config.tls, options.tls, challenges, log, this.metrics) : null;
    this.h2 = http2Limits(config.limits);
    this.whitelist = new CidrSet(config.access.whitelist);
    this.blacklist = new CidrSet(config.access.blacklist);
    this.forwardingProxies = new CidrSet(config.forwarded.trustProxy ? config.forwarded.trustedProxies : []);
    this.audit = createAudit(config.audit);
    this.writeSweep = setInterval(() => this.sweepConnections(), CONNECTION_SWEEP_MS);
    this.writeSweep.unref();
  }

  /**
   * Once a second, over every connection:
   *
   * Slowloris (min_data_rate): a request head arriving slower than the
   * minimum rate, past its first second, gets 408 and is closed. The parser
   * consumes the socket natively, but socket.bytesRead still counts what it
   * read since the last request ended. HTTP/2 frames arrive between requests
   * too (PING, SETTINGS, WINDOW_UPDATE), so a session is judged by
   * sweepSession instead.
   *
   * Slow read (write_timeout): a client that stops reading leaves our
   * answer queued in the socket. A connection whose queued bytes have not
   * moved for write_timeout is cut; nothing more can be written to it.
   * (One HTTP/2 stream stalled by its flow-control window is cut alone: watchStream.)
   */
  private sweepConnections(): void {
    const now = performance.now();
    const limitMs = this.config.timeouts.writeTimeoutMs;
    const minRate = this.config.timeouts.minDataRateBytesPerSec;
    for (const [socket, state] of this.connections) {
      if (state.session !== null) {
        if (this.sweepSession(state, state.session, now)) continue;
      } else if (state.inFlight === 0 && minRate > 0) {
        const headBytes = socket.bytesRead - state.bytesReadAtIdle;
        if (headBytes > 0) {
          state.headStartedAt ??= now;
          const elapsedMs = now - state.headStartedAt;
          if (elapsedMs >= HEAD_RATE_GRACE_MS && (headBytes * 1000) / elapsedMs < minRate) {
            this.metrics.rejection(ERRORS.SLOW_CLIENT.event);
            this.audit({
              event: ERRORS.SLOW_CLIENT.event,
              status: 408,
              clientIp: socket.remoteAddress,
              detail: `head at ${Math.round((headBytes * 1000) / elapsedMs)} B/s`,
            });
            // No request is in flight: the connection is at a message boundary, an answer can go out.
            if (socket.writable) socket.end(rawErrorResponse('SLOW_CLIENT', this.rawErrorHeaders(socket)));
            else socket.destroy();
            continue;
          }
        }
      }
      if (socket.writableLength === 0 || socket.bytesWritten !== state.bytesWrittenAtSweep) {
        state.bytesWrittenAtSweep = socket.bytesWritten;
        state.stalledSince = null;
        continue;
      }
      state.stalledSince ??= now;
      if (now - state.stalledSince >= limitMs) {
        this.audit({ event: 'response.write_timeout', clientIp: socket.remoteAddress, detail: `${socket.writableLength} bytes queued` });
        socket.destroy();
      }
    }
  }

  /**
   * An HTTP/2 session with no request in flight: closed with GOAWAY once
   * idle for keepalive_timeout (HTTP/1's keep-alive rule); cut as a slow
   * client when it has read more than control frames account for without a
   * request to show for them for header_read_timeout (a header block
   * trickled in, which nghttp2 holds where no request exists yet). True
   * when the session was closed.
   */
  private sweepSession(state: ConnectionState, session: ServerHttp2Session, now: number): boolean {
    if (state.inFlight > 0 || session.closed || session.destroyed) return false;
    const idleMs = now - state.idleSince;
    const pendingBytes = state.socket.bytesRead - state.bytesReadAtIdle;
    if (pendingBytes > H2_IDLE_CONTROL_BYTES && idleMs >= this.config.timeouts.headerReadTimeoutMs) {
      this.metrics.rejection(ERRORS.SLOW_CLIENT.event);
      this.audit({
        event: ERRORS.SLOW_CLIENT.event,
        clientIp: peerAddress(state.socket),
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

  /** Start accepting on a socket the master bound. */
  listen(spec: ListenerSpec, handle: unknown): Promise<void> {
    if (spec.purpose === 'metrics') return this.start(spec, this.metricsServer(), handle);
    if (spec.purpose === 'dashboard') return this.start(spec, createDashboardServer(this.config, this.link, loadDashboardAssets()), handle);
    const { limits, timeouts } = this.config;
    const httpOptions: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: timeouts.headerReadTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      keepAliveTimeout: timeouts.keepAliveTimeoutMs,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      // Checked in header-limits.ts, where the refusal is audited like any other.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      insecureHTTPParser: false,
      noDelay: true,
      // Node's typing asks for a class generic in its request type; ours answers IncomingMessage, which is what it gets.
      ServerResponse: secureResponseClass(this.config.responseHeaders, spec.protocol) as http.ServerOptions['ServerResponse'],
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.serve(spec.protocol, req, res);
    const server = http.createServer(httpOptions, handler);
    // Over TLS, the TLS front hands the HTTP/1 server each finished handshake as a connection.
    server.on('connection', (socket: Socket) => void this.track(socket, spec.protocol));
    server.maxRequestsPerSocket = limits.maxRequestsPerConnection;
    // One above the limit: Node 20 dropped headers past maxHeadersCount
    // without a word (header-limits.ts then sees one too many); Node 24
    // raises a header overflow (answered in answerParseError). Either way the
    // request is refused, never truncated.
    server.maxHeadersCount = limits.maxHeaders + 1;
    server.setTimeout(timeouts.idleTimeoutMs);
    server.on('clientError', (error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket) => {
      this.answerParseError(error, socket);
    });
    // Node starts checking headersTimeout and requestTimeout (every
    // connectionsCheckingInterval) when an http.Server emits 'listening'.
    // This one never listens — connections are handed to it — so it is told
    // now, before the first connection, or neither timeout would ever fire.
    server.emit('listening');
    const front = spec.protocol === 'https' ? this.httpsFront(server, handler) : server;
    // A plain TCP server accepts, paused: access lists, bans, the limits per
    // client and the PROXY protocol header come first; the HTTP (or TLS)
    // server only ever sees a connection let in, and what follows the header.
    const listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => void this.accept(socket, front));
    return this.start(spec, listener, handle);
  }

  /**
   * One request, over either protocol: the connection's bookkeeping, the
   * pipeline, the metrics. An HTTP/2 request and response are Node's
   * compatibility objects, which offer what the pipeline and the handlers
   * use of IncomingMessage and ServerResponse (test/system/http2.test.ts runs the
   * stages and handlers over them).
   */
  private serve(protocol: Protocol, req: http.IncomingMessage, res: http.ServerResponse): void {
    const stream = http2Stream(req);
    // Held here: by the time the response closes, req.socket may already be detached (null).
    const state =
      stream === null ? this.connections.get(req.socket) : stream.session === undefined ? undefined : this.sessions.get(stream.session);
    if (state) {
      state.inFlight += 1;
      state.headStartedAt = null;
    }
    if (stream !== null) this.watchStream(stream, state);
    else if (this.draining) res.shouldKeepAlive = false;
    const exchange = this.pipeline.handle(req, res, protocol);
    // One listener per request does the bookkeeping of both the connection and the metrics.
    res.once('close', () => {
      this.metrics.response(exchange.vhost?.spec.domains[0] ?? '', res.statusCode);
      if (state === undefined) return;
      state.inFlight -= 1;
      state.idleSince = performance.now();
      state.bytesReadAtIdle = state.socket.bytesRead;
    });
  }

  /** Connection bookkeeping from the moment a connection speaks HTTP (over TLS: once its handshake is done). */
  private track(socket: Socket, protocol: Protocol): ConnectionState {
    const state: ConnectionState = {
      socket,
      protocol,
      session: null,
      refused: false,
      inFlight: 0,
      idleSince: performance.now(),
      bytesReadAtIdle: socket.bytesRead,
      headStartedAt: null,
      bytesWrittenAtSweep: 0,
      stalledSince: null,
    };
    this.connections.set(socket, state);
    socket.once('close', () => this.connections.delete(socket));
    return state;
  }

  /**
   * The front of an HTTPS listener: TLS (tls-front.ts), then HTTP/2 or
   * HTTP/1.1 by what ALPN chose, both into the same pipeline.
   */
  private httpsFront(http1: http.Server, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): tls.Server {
    const front = this.tlsFront;
    if (front === null) throw new Error('an HTTPS listener without TLS material from the master');
    const http2 = this.http2Server(handler);
    return front.createServer((socket) => {
      if (socket.alpnProtocol !== 'h2') {
        http1.emit('connection', socket);
        return;
      }
      // Node creates the session inside emit('connection') and announces it, synchronously, with 'session'.
      this.adopting = this.track(socket, 'https');
      try {
        http2.emit('connection', socket);
      } finally {
        this.adopting = null;
      }
    });
  }

  private http2Server(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Http2Server {
    // The compatibility objects stand in for IncomingMessage and ServerResponse (see serve()).
    const server = createHttp2Server(this.h2, this.config.responseHeaders, (req, res) =>
      handler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse),
    );
    // No byte either way for idle_timeout: the session is closed (as an HTTP/1 socket would be).
    server.setTimeout(this.config.timeouts.idleTimeoutMs);
    server.on('session', (session: ServerHttp2Session) => this.adoptSession(session));
    return server;
  }

  /**
   * A new HTTP/2 session: its streams are counted against
   * max_request_per_connection (then GOAWAY: the last one is served), and
   * every stream ending in RST_STREAM spends from the rapid-reset allowance
   * (CVE-2023-44487); once it is spent the session gets GOAWAY
   * ENHANCE_YOUR_CALM and is closed, with an audit event. A protocol error
   * nghttp2 found (too many concurrent streams, a flood of invalid frames)
   * is audited too, and so is a client that does not acknowledge our
   * SETTINGS within header_read_timeout (GOAWAY SETTINGS_TIMEOUT).
   */
  private adoptSession(session: ServerHttp2Session): void {
    const state = this.adopting;
    // Sessions come only from httpsFront, which sets `adopting` around their creation.
    if (state === null) {
      session.destroy();
      return;
    }
    state.session = session;
    this.sessions.set(session, state);
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
    const budget = new StreamResetBudget(this.h2);
    let streams = 0;
    let rapidReset = false;
    const refuseRapidReset = (how: string): void => {
      rapidReset = true;
      this.auditConnection('connection.rapid_reset', state, `${budget.resets} of ${streams} streams reset; ${how}`);
      if (!session.destroyed) this.closeSession(state, session, h2.NGHTTP2_ENHANCE_YOUR_CALM);
    };
    session.on('stream', (stream: ServerHttp2Stream) => {
      streams += 1;
      if (streams >= this.config.limits.maxRequestsPerConnection || this.draining) session.close();
      stream.once('close', () => {
        // Streams torn down with the session carry its code, not a reset of their own.
        if (state.refused || rapidReset || session.destroyed || stream.rstCode === undefined || stream.rstCode === h2.NGHTTP2_NO_ERROR)
          return;
        if (!budget.spend()) refuseRapidReset('GOAWAY ENHANCE_YOUR_CALM');
      });
    });
    session.on('error', (error: NodeJS.ErrnoException) => {
      const ip = peerAddress(state.socket);
      if (state.refused || error.code === 'ECONNRESET' || error.code === 'EPIPE') {
        this.log.debug({ event: 'connection.reset', clientIp: ip, code: error.code }, 'HTTP/2 session ended');
        return;
      }
      // Deferred past the streams' 'close' events (next tick), so their resets are counted first.
      setImmediate(() => {
        if (rapidReset) return;
        // nghttp2 ended the session while streams were being reset: its own reset limit (streamResetBurst)
        // acted before ours could; it sees every RST_STREAM, including those of streams Node refused before
        // JavaScript saw them, so its limit can be reached first within one read.
        if (budget.resetWithinMs(RESET_ATTRIBUTION_MS)) {
          refuseRapidReset(`ended by nghttp2 (${error.message})`);
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
    const ip = peerAddress(state.socket);
    const suppressed = this.refusalThrottle(`${event} ${ip}`);
    if (suppressed !== null) this.audit({ event, clientIp: ip, detail: withSuppressed(detail, suppressed) });
  }

  /** GOAWAY with `code` and the connection closed: the client is at fault, and was audited. */
  private closeSession(state: ConnectionState, session: ServerHttp2Session, code: number): void {
    state.refused = true;
    // The error is only for the session's 'error' event, which `refused` quiets; `code` goes in the GOAWAY.
    session.destroy(new Error('closed by the server'), code);
  }

  /**
   * One HTTP/2 stream's slow-read defence: its answer can stall behind its
   * own flow-control window while the connection moves. Node times the
   * stream out when nothing moved on it for write_timeout; with bytes still
   * queued, the stream is reset (the connection serves on). A stream merely
   * waiting (for an upstream, for the client's body) is left to those timeouts.
   */
  private watchStream(stream: ServerHttp2Stream, state: ConnectionState | undefined): void {
    stream.setTimeout(this.config.timeouts.writeTimeoutMs, () => {
      if (stream.destroyed || stream.bufferSize === 0) return;
      this.audit({
        event: 'response.write_timeout',
        clientIp: state === undefined ? undefined : peerAddress(state.socket),
        detail: `HTTP/2 stream ${stream.id}: ${stream.bufferSize} bytes queued`,
      });
      stream.close(h2.NGHTTP2_CANCEL);
    });
  }

  /** The master rotated the session ticket key: every HTTPS server takes it at once. */
  setTicketKey(ticketKey: string): void {
    this.tlsFront?.setTicketKey(ticketKey);
  }

  /** TLS_CERTS: new handshakes get the new set; open connections keep theirs. */
  setCertificates(certificates: readonly CertificateMaterial[]): void {
    this.tlsFront?.setCertificates(certificates);
  }

  /**
   * [server.metrics]: GET /metrics answers the master's totals (asked over
   * IPC: the master holds them but never parses a network request). Bound to
   * 127.0.0.1 by default; small limits, no keep-alive to speak of.
   */
  private metricsServer(): http.Server {
    return http.createServer(
      {
        maxHeaderSize: 4096,
        headersTimeout: 5000,
        requestTimeout: 10_000,
        keepAliveTimeout: 5000,
        connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      },
      (req, res) => {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('Method Not Allowed\n');
          return;
        }
        if ((req.url ?? '').split('?', 1)[0] !== '/metrics') {
          res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found: the metrics are at /metrics\n');
          return;
        }
        void this.scrapeText().then((text) => {
          res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : text);
        });
      },
    );
  }

  /**
   * The master's text, asked at most once a second however often the
   * endpoint is hit: a flood of scrapes costs the master one render a second.
   */
  private scrapeText(): Promise<string> {
    const now = performance.now();
    if (this.scraped === null || now - this.scraped.at >= SCRAPE_CACHE_MS) this.scraped = { at: now, text: this.link.scrape() };
    return this.scraped.text;
  }

  private start(spec: ListenerSpec, listener: net.Server, handle: unknown): Promise<void> {
    this.listeners.push(listener);
    return new Promise((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(handle as never, () => {
        listener.off('error', reject);
        // The socket must be exactly the one the master bound (see listeners.ts).
        const address = listener.address();
        if (address === null || typeof address === 'string' || address.port !== spec.port) {
          reject(new Error(`listener ${spec.id} is not bound where the master said`));
          return;
        }
        resolve();
      });
    });
  }

  /**
   * Stop accepting, let in-flight requests finish (their responses say
   * Connection: close), close idle keep-alive connections, and resolve once
   * every connection is gone or the deadline passed.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    // net.Server's close only stops accepting; http.Server's would also cut
    // idle keep-alive connections at once.
    for (const listener of this.listeners) net.Server.prototype.close.call(listener);
    const sweep = setInterval(() => this.closeIdleConnections(DRAIN_IDLE_CLOSE_MS), DRAIN_SWEEP_MS);
    this.closeIdleConnections(DRAIN_IDLE_CLOSE_MS);
    const deadline = performance.now() + deadlineMs;
    while (this.connections.size > 0 && performance.now() < deadline) await sleep(DRAIN_SWEEP_MS);
    for (const socket of this.connections.keys()) socket.destroy();
    clearInterval(sweep);
    clearInterval(this.writeSweep);
    await this.pipeline.close();
    this.metrics.close();
  }

  /**
   * A freshly accepted connection, paused: nothing is read until it is let in.
   *
   * 1. The TCP peer: a blacklisted or banned one is closed before a byte is
   *    read ([security.ddos]).
   * 2. PROXY protocol ([security.proxy_protocol]): the header is read, the
   *    source it names becomes the client; a connection that may not or did
   *    not send one as required is closed before any HTTP byte is parsed.
   *    The source is checked like the peer.
   * 3. The master's server-wide limits for this client (max_connections,
   *    max_connections_per_ip, connection_rate_per_ip): the connection waits,
   *    unread, for its answer. Whitelisted clients skip 1-3.
   */
  private async accept(socket: Socket, server: net.Server): Promise<void> {
    socket.on('error', () => socket.destroy());
    let client = this.clientOf(socket.remoteAddress ?? '');
    if (!this.mayConnect(socket, client)) return;
    // A trusted forwarding proxy carries many clients on its address: they are
    // limited per request, by the address it names (access.ts), not here.
    if (client.counted && this.forwardingProxies.has(client.ip)) client = { ip: client.ip, counted: false };
    if (this.config.proxyProtocol.enabled) {
      const { required, trustedProxies, headerTimeoutMs } = this.config.proxyProtocol;
      this.proxyTrust ??= new CidrSet(trustedProxies);
      const result = await readProxyHeader(socket, { required, trusted: this.proxyTrust, timeoutMs: headerTimeoutMs });
      if (!result.ok) {
        this.metrics.rejection(`proxy_protocol.${result.reason}`);
        this.audit({ event: `proxy_protocol.${result.reason}`, clientIp: socket.remoteAddress, detail: result.detail });
        socket.destroy();
        return;
      }
      if (result.header?.kind === 'proxy') {
        setProxiedSource(socket, result.header.sourceIp);
        client = this.clientOf(result.header.sourceIp);
        if (!this.mayConnect(socket, client)) return;
      }
    }
    if (client.counted) {
      const verdict = await this.link.admit(client.ip);
      if (verdict !== 'ok') {
        this.refuseConnection(socket, client.ip, verdict);
        return;
      }
      if (socket.destroyed) {
        this.link.closed(client.ip);
        return;
      }
      socket.once('close', () => this.link.closed(client.ip));
    }
    handOver(server, socket);
  }

  /** The key limits and bans use, and whether the client is subject to them (not whitelisted, an address at all). */
  private clientOf(address: string): { ip: string; counted: boolean } {
    const ip = clientKey(address);
    return ip === null ? { ip: address, counted: false } : { ip, counted: !this.whitelist.has(ip) };
  }

  /** False (and the connection closed) for a blacklisted or banned client. */
  private mayConnect(socket: Socket, client: { ip: string; counted: boolean }): boolean {
    if (!client.counted) return true;
    if (this.blacklist.has(client.ip)) this.refuseConnection(socket, client.ip, 'blacklisted');
    else if (this.link.isBanned(client.ip)) this.refuseConnection(socket, client.ip, 'banned');
    else return true;
    return false;
  }

  /** Closed at accept, nothing read; audited at most once a second per client and reason. */
  private refuseConnection(socket: Socket, ip: string, reason: string): void {
    socket.destroy();
    const event =
      reason === 'blacklisted' ? 'connection.blacklisted' : reason === 'banned' ? 'connection.banned' : 'connection.limit_exceeded';
    this.metrics.rejection(event);
    const suppressed = this.refusalThrottle(`${reason} ${ip}`);
    if (suppressed === null) return;
    this.audit({ event, clientIp: ip, detail: withSuppressed(reason, suppressed) });
  }

  /** The security headers a raw error answer on `socket` carries (HSTS only over HTTPS). */
  private rawErrorHeaders(socket: Socket): readonly (readonly [string, string])[] {
    return policyHeaders(this.config.responseHeaders, this.connections.get(socket)?.protocol ?? 'http');
  }

  /** While draining: HTTP/2 sessions get GOAWAY at once (their streams finish, then they close); idle HTTP/1 connections are ended. */
  private closeIdleConnections(idleForMs: number): void {
    const now = performance.now();
    for (const [socket, state] of this.connections) {
      if (state.session !== null) state.session.close();
      else if (state.inFlight === 0 && now - state.idleSince >= idleForMs) socket.end();
    }
  }

  /**
   * Parse errors never reach the pipeline: Node's parser (llhttp) rejected
   * the bytes. Answer from the catalogue with the security headers, close
   * (the framing is lost), and log without err.rawPacket, which holds the
   * raw request including any Authorization or Cookie header.
   */
  private answerParseError(error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket): void {
    let code: ErrorCode | null = 'MALFORMED_REQUEST';
    if (error.code === 'HPE_HEADER_OVERFLOW') {
      // The request line alone overflowed the head limit: that is a URL too
      // long (414), not too many header bytes (431). Only the line break is
      // looked for; the raw bytes are never logged.
      // Node 24's parser also reports more than maxHeadersCount headers as an
      // overflow: a complete head within the size limit means that case.
      const raw = error.rawPacket;
      const lineEnd = raw?.indexOf(0x0a) ?? 0;
      const headEnd = raw?.indexOf('\r\n\r\n') ?? -1;
      const maxBytes = this.config.limits.maxHeaderBytes;
      if (lineEnd === -1 || lineEnd > maxBytes) code = 'URL_TOO_LONG';
      else if (headEnd !== -1 && headEnd + 4 <= maxBytes) code = 'TOO_MANY_HEADERS';
      else code = 'HEADERS_TOO_LARGE';
    } else if (error.code === 'HPE_INVALID_VERSION') code = 'VERSION_NOT_SUPPORTED';
    else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') code = 'REQUEST_TIMEOUT';
    else if (error.code === 'ECONNRESET' || error.code === 'EPIPE') code = null;
    if (code === null) this.log.debug({ event: 'connection.reset', clientIp: socket.remoteAddress }, 'client error');
    else {
      this.metrics.rejection(ERRORS[code].event);
      this.audit({ event: ERRORS[code].event, status: ERRORS[code].status, clientIp: socket.remoteAddress, detail: error.code });
    }
    if (code !== null && socket.writable && socket.bytesWritten === 0) {
      socket.end(rawErrorResponse(code, this.rawErrorHeaders(socket)));
    } else {
      socket.destroy();
    }
  }
}
