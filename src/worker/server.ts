/**
 * The HTTP servers of one worker, one per inherited listening socket. The
 * worker never binds: it calls listen() on the bound socket the master sent.
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import net, { type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { CompiledConfig, ListenerSpec, Protocol } from '../config/types.js';
import { CidrSet, clientKey } from '../net/cidr.js';
import type { CertificateMaterial } from '../tls/material.js';
import { tlsPolicy } from '../tls/policy.js';
import { SniTable } from '../tls/sni.js';
import { createAudit, createAuditThrottle, withSuppressed, type Audit } from './audit.js';
import type { MasterPort } from './master-link.js';
import { WorkerMetrics } from './metrics.js';
import { setProxiedSource } from './connection-peer.js';
import { ERRORS, rawErrorResponse, type ErrorCode } from './errors.js';
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
  readonly protocol: Protocol;
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

export class WorkerServer {
  /** What accepts: the HTTP servers, or the PROXY protocol front of each. */
  private readonly listeners: net.Server[] = [];
  private readonly connections = new Map<Socket, ConnectionState>();
  private readonly pipeline: Pipeline;
  private readonly metrics: WorkerMetrics;
  private readonly httpsServers: https.Server[] = [];
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
    /** Certificates, keys and session ticket key from the master; null without TLS. */
    private readonly tls: { certificates: CertificateMaterial[]; ticketKey: string; sessionIdContext: string } | null = null,
    pipelineVariant: PipelineVariant = 'full',
  ) {
    this.metrics = new WorkerMetrics(link, () => this.connections.size);
    this.pipeline = createPipeline(config, log, link, this.metrics, pipelineVariant);
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
   * read since the last request ended.
   *
   * Slow read (write_timeout): a client that stops reading leaves our
   * answer queued in the socket. A connection whose queued bytes have not
   * moved for write_timeout is cut; nothing more can be written to it.
   */
  private sweepConnections(): void {
    const now = performance.now();
    const limitMs = this.config.timeouts.writeTimeoutMs;
    const minRate = this.config.timeouts.minDataRateBytesPerSec;
    for (const [socket, state] of this.connections) {
      if (state.inFlight === 0 && minRate > 0) {
        const headBytes = socket.bytesRead - state.bytesReadAtIdle;
        if (headBytes > 0) {
          state.headStartedAt ??= now;
          const elapsedMs = now - state.headStartedAt;
          if (elapsedMs >= HEAD_RATE_GRACE_MS && (headBytes * 1000) / elapsedMs < minRate) {
            this.metrics.rejection(ERRORS.SLOW_CLIENT.event);
            this.audit({ event: ERRORS.SLOW_CLIENT.event, status: 408, clientIp: socket.remoteAddress, detail: `head at ${Math.round((headBytes * 1000) / elapsedMs)} B/s` });
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

  /** Start accepting on a socket the master bound. */
  listen(spec: ListenerSpec, handle: unknown): Promise<void> {
    if (spec.purpose === 'metrics') return this.start(spec, this.metricsServer(), handle);
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
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      // Held here: by the time the response closes, req.socket may already be detached (null).
      const socket = req.socket;
      const state = this.connections.get(socket);
      if (state) {
        state.inFlight += 1;
        state.headStartedAt = null;
      }
      if (this.draining) res.shouldKeepAlive = false;
      const exchange = this.pipeline.handle(req, res, spec.protocol);
      // One listener per request does the bookkeeping of both the connection and the metrics.
      res.once('close', () => {
        this.metrics.response(exchange.vhost?.spec.domains[0] ?? '', res.statusCode);
        if (state === undefined) return;
        state.inFlight -= 1;
        state.idleSince = performance.now();
        state.bytesReadAtIdle = socket.bytesRead;
      });
    };
    const server = spec.protocol === 'https' ? this.httpsServer(httpOptions, handler) : http.createServer(httpOptions, handler);
    // Over TLS, requests arrive on the TLS socket once its handshake is done.
    server.on(spec.protocol === 'https' ? 'secureConnection' : 'connection', (socket: Socket) => {
      this.connections.set(socket, {
        protocol: spec.protocol,
        inFlight: 0,
        idleSince: performance.now(),
        bytesReadAtIdle: 0,
        headStartedAt: null,
        bytesWrittenAtSweep: 0,
        stalledSince: null,
      });
      socket.once('close', () => this.connections.delete(socket));
    });
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
    // A plain TCP server accepts, paused: access lists, bans, the limits per
    // client and the PROXY protocol header come first; the HTTP server only
    // ever sees a connection let in, and what follows the header.
    const listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => void this.accept(socket, server));
    return this.start(spec, listener, handle);
  }

  /**
   * An HTTPS server on the certificates the master sent (TLS_INIT): SNI by
   * exact and wildcard name, the first certificate for clients that send no
   * name or an unknown one; the TLS policy of [security]; the ticket key and
   * session ID context every worker shares, so sessions resume across
   * workers. A handshake gets header_read_timeout, like a request head.
   */
  private httpsServer(options: http.ServerOptions, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): https.Server {
    const tlsSpec = this.config.tls;
    const material = this.tls;
    if (tlsSpec === null || material === null) throw new Error('an HTTPS listener without TLS material from the master');
    const policy = tlsPolicy(tlsSpec.minVersion, tlsSpec.ciphers ?? undefined);
    const contexts = new SniTable<tls.SecureContext>();
    const contextOptions = (certificate: CertificateMaterial): tls.SecureContextOptions => ({
      key: certificate.keyPem,
      cert: certificate.chainPem === null ? certificate.certPem : `${certificate.certPem}\n${certificate.chainPem}`,
      ...policy,
      sessionIdContext: material.sessionIdContext,
    });
    for (const certificate of material.certificates) contexts.add(certificate.name, tls.createSecureContext(contextOptions(certificate)));
    const first = material.certificates[0]!;
    const server = https.createServer(
      {
        ...options,
        ...contextOptions(first),
        SNICallback: (serverName, callback) => callback(null, contexts.match(serverName) ?? undefined),
        ticketKeys: Buffer.from(material.ticketKey, 'base64'),
        handshakeTimeout: tlsSpec.handshakeTimeoutMs,
        ALPNProtocols: ['http/1.1'],
      },
      handler,
    );
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: Socket) => {
      this.metrics.rejection('tls.handshake_failed');
      this.log.debug({ event: 'tls.handshake_failed', clientIp: socket.remoteAddress, code: error.code }, 'TLS handshake failed');
      socket.destroy();
    });
    this.httpsServers.push(server);
    return server;
  }

  /** The master rotated the session ticket key: every HTTPS server takes it at once. */
  setTicketKey(ticketKey: string): void {
    const key = Buffer.from(ticketKey, 'base64');
    for (const server of this.httpsServers) server.setTicketKeys(key);
  }

  /**
   * [server.metrics]: GET /metrics answers the master's totals (asked over
   * IPC: the master holds them but never parses a network request). Bound to
   * 127.0.0.1 by default; small limits, no keep-alive to speak of.
   */
  private metricsServer(): http.Server {
    return http.createServer(
      { maxHeaderSize: 4096, headersTimeout: 5000, requestTimeout: 10_000, keepAliveTimeout: 5000, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS },
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
  private async accept(socket: Socket, server: http.Server): Promise<void> {
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
    const event = reason === 'blacklisted' ? 'connection.blacklisted' : reason === 'banned' ? 'connection.banned' : 'connection.limit_exceeded';
    this.metrics.rejection(event);
    const suppressed = this.refusalThrottle(`${reason} ${ip}`);
    if (suppressed === null) return;
    this.audit({ event, clientIp: ip, detail: withSuppressed(reason, suppressed) });
  }

  /** The security headers a raw error answer on `socket` carries (HSTS only over HTTPS). */
  private rawErrorHeaders(socket: Socket): readonly (readonly [string, string])[] {
    return policyHeaders(this.config.responseHeaders, this.connections.get(socket)?.protocol ?? 'http');
  }

  private closeIdleConnections(idleForMs: number): void {
    const now = performance.now();
    for (const [socket, state] of this.connections) {
      if (state.inFlight === 0 && now - state.idleSince >= idleForMs) socket.end();
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
