/**
 * The HTTP servers of one worker, one per inherited listening socket. The
 * worker never binds: it calls listen() on the bound socket the master sent.
 *
 * This file wires the parts a connection meets, in order: the accept gate
 * (connection/gate.ts), TLS (tls-front.ts), HTTP/1 (Node's server; parse
 * errors: connection/parse-error.ts) or HTTP/2 (http2.ts), the pipeline
 * (pipeline/index.ts); the connection table and its sweeps
 * (connection/watch.ts) watch every connection until it closes. It also
 * drains, at reload and stop.
 */
import type * as http from 'node:http';
import { nodeHttp } from '../node-builtins.js';
import type tls from 'node:tls';
import net, { type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { CompiledConfig, ListenerSpec, Protocol } from '../config/types.js';
import type { CertificateMaterial } from '../tls/material.js';
import { AcmeChallenges } from './acme-challenges.js';
import { createAudit, createAuditThrottle } from './audit.js';
import { ConnectionGate } from './connection/gate.js';
import { parseErrorAnswer, type ParseError } from './connection/parse-error.js';
import { type ConnectionState, ConnectionTable } from './connection/watch.js';
import { Http2Sessions } from './http2.js';
import { http2Stream } from './http2-request.js';
import type { MasterPort } from './master-link.js';
import { createMetricsServer } from './metrics-endpoint.js';
import { loadDashboardAssets } from './dashboard/assets.js';
import { createDashboardServer } from './dashboard/server.js';
import { WorkerMetrics } from './metrics.js';
import type { ProxySupport } from './handlers/proxy-support.js';
import { createPipeline, type Pipeline, type PipelineVariant } from './pipeline/index.js';
import type { Exchange } from './pipeline/stage.js';
import { PROTOCOL, secureResponseClass } from './response-headers.js';
import { peerAddress } from './connection/peer.js';
import { TlsFront, type TlsMaterial } from './tls-front.js';
import { upgradeTokens } from './websocket/handshake.js';
import { WebSocketTunnels } from './websocket/tunnel.js';
import { isTunnelled } from './websocket/upstream.js';

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

/** Options of a WorkerServer beyond its config. */
export interface WorkerServerOptions {
  /** Certificates, keys and session ticket key from the master; null without TLS. */
  readonly tls?: TlsMaterial | null;
  /** The ACME challenges the master publishes (ACME_CHALLENGES). */
  readonly challenges?: AcmeChallenges;
  readonly pipelineVariant?: PipelineVariant;
  /** The proxy's code: loadProxySupport(config), required when the config has a proxy backend. */
  readonly proxy?: ProxySupport | null;
}

type RequestListener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

const EXCHANGE = Symbol('exchange');
const CONNECTION = Symbol('connection');

/**
 * What serve() tells an HTTP/1 response: the protocol it goes out over
 * (response-headers.ts), and Node's field for the Keep-Alive header's
 * timeout, which ServerResponse otherwise takes from the server's keepAliveTimeout.
 */
type Http1Response = http.ServerResponse & { [PROTOCOL]: Protocol; _keepAliveTimeout: number };

/** A response that carries what its 'close' settles: the exchange (until then) and its connection's state. */
type BookedResponse = http.ServerResponse & { [EXCHANGE]?: Exchange; [CONNECTION]?: ConnectionState };

/**
 * The 'close' listener of every response: the metrics count the response,
 * its connection is idle again. It reads the request's exchange off the
 * response, so nothing (no closure, no once() wrapper) is made per request;
 * taking the exchange off makes a second 'close' a no-op, as once() would.
 */
function responseCloser(metrics: WorkerMetrics, connections: ConnectionTable): (this: BookedResponse) => void {
  return function responseClosed(this: BookedResponse): void {
    const exchange = this[EXCHANGE];
    if (exchange === undefined) return;
    this[EXCHANGE] = undefined;
    metrics.response(exchange.vhost?.spec.domains[0] ?? '', this.statusCode);
    const state = this[CONNECTION];
    if (state !== undefined) connections.requestEnded(state);
  };
}

export class WorkerServer {
  /** What accepts: the gate in front of each HTTP server, or the metrics server. */
  private readonly listeners: net.Server[] = [];
  private readonly connections: ConnectionTable;
  private readonly gate: ConnectionGate;
  private readonly http2: Http2Sessions;
  private readonly pipeline: Pipeline;
  private readonly metrics: WorkerMetrics;
  /** The TLS side of the HTTPS listeners, or null without TLS. */
  private readonly tlsFront: TlsFront | null;
  private readonly answerParseError: (error: ParseError, socket: Socket) => void;
  /** WebSocket connections once switched (websocket/tunnel.ts): drained with the server. */
  private readonly tunnels: WebSocketTunnels;
  private draining = false;
  /** The response class of every HTTP/1 server, plain or TLS: one shape of response for Node's code (response-headers.ts). */
  private readonly responseClass: ReturnType<typeof secureResponseClass>;
  /** Every response's 'close' listener: one function for all of them (see responseCloser). */
  private readonly responseClosed: (this: BookedResponse) => void;

  constructor(
    private readonly config: CompiledConfig,
    log: Logger,
    private readonly link: MasterPort,
    options: WorkerServerOptions = {},
  ) {
    const challenges = options.challenges ?? new AcmeChallenges(log);
    const audit = createAudit(config.audit);
    // Refused connections, at accept or as HTTP/2 sessions, are audited at most once a second per client.
    const refusalThrottle = createAuditThrottle();
    this.metrics = new WorkerMetrics(link, () => this.connections.size);
    this.tunnels = new WebSocketTunnels(
      { idleTimeoutMs: config.timeouts.idleTimeoutMs, writeTimeoutMs: config.timeouts.writeTimeoutMs },
      audit,
      this.metrics,
    );
    this.pipeline = createPipeline(
      config,
      log,
      link,
      this.metrics,
      challenges,
      options.pipelineVariant ?? 'full',
      this.tunnels,
      options.proxy ?? null,
    );
    this.tlsFront =
      config.tls !== null && options.tls != null ? new TlsFront(config.tls, options.tls, challenges, log, this.metrics) : null;
    this.http2 = new Http2Sessions(config, log, this.metrics, audit, refusalThrottle, () => this.draining);
    this.connections = new ConnectionTable(config.timeouts, config.responseHeaders, this.metrics, audit, (state, session, now) =>
      this.http2.sweep(state, session, now),
    );
    this.responseClosed = responseCloser(this.metrics, this.connections);
    this.responseClass = secureResponseClass(config.responseHeaders);
    this.gate = new ConnectionGate(config, link, this.metrics, audit, refusalThrottle);
    this.answerParseError = parseErrorAnswer(config.limits, log, this.metrics, audit, (socket) => this.connections.errorHeaders(socket));
  }

  /** Start accepting on a socket the master bound. */
  listen(spec: ListenerSpec, handle: unknown): Promise<void> {
    if (spec.purpose === 'metrics') return this.start(spec, createMetricsServer(this.link), handle);
    if (spec.purpose === 'dashboard') return this.start(spec, createDashboardServer(this.config, this.link, loadDashboardAssets()), handle);
    const { limits, timeouts } = this.config;
    const httpOptions: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: timeouts.headerReadTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      // Node's keep-alive and idle timers (keepAliveTimeout, server.setTimeout)
      // would re-arm a socket timer several times a request; the connection
      // sweep keeps both times instead, once a second (connection/watch.ts).
      keepAliveTimeout: 0,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      // Checked in header-limits.ts, where the refusal is audited like any other.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      insecureHTTPParser: false,
      noDelay: true,
      // Node's typing asks for a class generic in its request type; ours answers IncomingMessage, which is what it gets.
      ServerResponse: this.responseClass as http.ServerOptions['ServerResponse'],
      // Upgrades go to 'upgrade' below, except one to h2c alone: that is
      // served as the HTTP/1.1 request it also is (RFC 9110 §7.8 lets a
      // server ignore Upgrade; RFC 9113 §3.1 retired h2c), so `curl --http2`
      // over plain HTTP gets its answer.
      shouldUpgradeCallback: (req) => upgradeTokens(req.headers.upgrade).some((token) => token !== 'h2c'),
    };
    const handler: RequestListener = (req, res) => this.serve(spec.protocol, req, res);
    const server = nodeHttp.createServer(httpOptions, handler);
    // Over TLS, the TLS front hands the HTTP/1 server each finished handshake as a connection.
    server.on('connection', (socket: Socket) => void this.connections.track(socket, spec.protocol));
    // max_request_per_connection is counted in serve(), not by Node's
    // maxRequestsPerSocket: Node answers the requests past it 503 and keeps
    // reading, where RFC 9112 §9.6 says none after `Connection: close` is processed.
    // One above the limit: Node 20 dropped headers past maxHeadersCount
    // without a word (header-limits.ts then sees one too many); Node 24
    // raises a header overflow (answered as a parse error). Either way the
    // request is refused, never truncated.
    server.maxHeadersCount = limits.maxHeaders + 1;
    server.on('clientError', this.answerParseError);
    server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => this.serveUpgrade(spec.protocol, req, socket, head));
    // Node starts checking headersTimeout and requestTimeout (every
    // connectionsCheckingInterval) when an http.Server emits 'listening'.
    // This one never listens — connections are handed to it — so it is told
    // now, before the first connection, or neither timeout would ever fire.
    server.emit('listening');
    const front = spec.protocol === 'https' ? this.httpsFront(server, handler) : server;
    // A plain TCP server accepts, paused: access lists, bans, the limits per
    // client and the PROXY protocol header come first; the HTTP (or TLS)
    // server only ever sees a connection let in, and what follows the header.
    const listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => void this.gate.accept(socket, front));
    return this.start(spec, listener, handle);
  }

  /**
   * One request, over either protocol: the connection's bookkeeping, the
   * pipeline, the metrics. An HTTP/2 request and response offer what the
   * pipeline and the handlers use of IncomingMessage and ServerResponse
   * (http2.ts; test/system/http2.test.ts runs the stages and handlers over them).
   */
  private serve(protocol: Protocol, req: http.IncomingMessage, res: http.ServerResponse): void {
    const stream = http2Stream(req);
    // Held here: by the time the response closes, req.socket may already be detached (null).
    const state = stream === null ? this.connections.get(req.socket) : this.http2.stateOf(stream);
    if (stream === null) {
      // The protocol the response goes out over (HSTS only over HTTPS), and the keep-alive
      // time it announces (Keep-Alive: timeout=N), which the sweep keeps: Node's timer is off.
      (res as Http1Response)[PROTOCOL] = protocol;
      (res as Http1Response)._keepAliveTimeout = this.config.timeouts.keepAliveTimeoutMs;
    }
    if (stream === null && state !== undefined) {
      state.requests += 1;
      // RFC 9112 §9.6: the response to the last request allowed says
      // Connection: close; a request pipelined behind it is not processed
      // (it gets no answer: the connection closes once that response is out).
      if (state.requests > this.config.limits.maxRequestsPerConnection) return;
      if (state.requests === this.config.limits.maxRequestsPerConnection) res.shouldKeepAlive = false;
    }
    if (state) this.connections.requestStarted(state);
    if (stream === null && this.draining) res.shouldKeepAlive = false;
    const booked = res as BookedResponse;
    // A connection is tracked from its first byte of HTTP, so `state` is missing only for one already closed.
    booked[EXCHANGE] = this.pipeline.handle(req, res, protocol, state?.peerIp ?? peerAddress(req.socket));
    booked[CONNECTION] = state;
    // One listener function, made once, does the bookkeeping of every request: no closure per request.
    res.on('close', this.responseClosed);
  }

  /**
   * An HTTP/1.1 request asking to switch protocols. Node hands it over
   * with the raw socket and no response; it gets one on that socket, and
   * goes through the same pipeline as every request (limits, access lists,
   * rate limits, IDS, the route's permission): the upgrade stage and the
   * proxy decide what becomes of it. Whatever the answer, the connection
   * closes after it, unless it became a WebSocket tunnel.
   */
  private serveUpgrade(protocol: Protocol, req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    const res = new this.responseClass(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.on('finish', () => {
      // A tunnel keeps its own idle timer; any other answer ends the connection, the sweep's idle_timeout still on it.
      if (!isTunnelled(res)) socket.end();
      else {
        const state = this.connections.get(socket);
        if (state !== undefined) state.tunnelled = true;
      }
    });
    // Bytes the client sent after the head (frames it should not have sent yet) are read by the tunnel, if one opens.
    if (head.length > 0) socket.unshift(head);
    this.serve(protocol, req, res);
  }

  /**
   * The front of an HTTPS listener: TLS (tls-front.ts), then HTTP/2 or
   * HTTP/1.1 by what ALPN chose, both into the same pipeline.
   */
  private httpsFront(http1: http.Server, handler: RequestListener): tls.Server {
    const front = this.tlsFront;
    if (front === null) throw new Error('an HTTPS listener without TLS material from the master');
    const http2 = this.http2.server(handler);
    return front.createServer((socket) => {
      if (socket.alpnProtocol !== 'h2') http1.emit('connection', socket);
      else http2(socket, this.connections.track(socket, 'https'));
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
    // WebSocket tunnels get a close frame 1001 "going away" at their next frame boundary (websocket/tunnel.ts).
    this.tunnels.goAway();
    // net.Server's close only stops accepting; http.Server's would also cut
    // idle keep-alive connections at once.
    for (const listener of this.listeners) net.Server.prototype.close.call(listener);
    const sweep = setInterval(() => this.connections.closeIdle(DRAIN_IDLE_CLOSE_MS), DRAIN_SWEEP_MS);
    this.connections.closeIdle(DRAIN_IDLE_CLOSE_MS);
    const deadline = performance.now() + deadlineMs;
    while (this.connections.size > 0 && performance.now() < deadline) await sleep(DRAIN_SWEEP_MS);
    this.connections.closeAll();
    this.tunnels.close();
    clearInterval(sweep);
    await this.pipeline.close();
    this.metrics.close();
  }
}
