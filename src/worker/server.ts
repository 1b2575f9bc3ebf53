/**
 * The HTTP servers of one worker, one per inherited listening socket. The
 * worker never binds: it calls listen() on the bound socket the master sent.
 */
import http from 'node:http';
import net, { type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { CompiledConfig, ListenerSpec } from '../config/types.js';
import { ERRORS, rawErrorResponse, type ErrorCode } from './errors.js';
import { createPipeline, type Pipeline } from './pipeline/index.js';
import { secureResponseClass } from './pipeline/response-headers.js';

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
  inFlight: number;
  idleSince: number;
}

export class WorkerServer {
  private readonly servers: http.Server[] = [];
  private readonly connections = new Map<Socket, ConnectionState>();
  private readonly pipeline: Pipeline;
  private readonly responseClass: typeof http.ServerResponse<http.IncomingMessage>;
  private draining = false;

  constructor(
    private readonly config: CompiledConfig,
    private readonly log: Logger,
  ) {
    this.pipeline = createPipeline(config, log);
    this.responseClass = secureResponseClass(config);
  }

  /** Start accepting on a socket the master bound. */
  listen(spec: ListenerSpec, handle: unknown): Promise<void> {
    const { limits, timeouts } = this.config;
    const server = http.createServer(
      {
        maxHeaderSize: limits.maxHeaderBytes,
        headersTimeout: timeouts.headerReadTimeoutMs,
        requestTimeout: timeouts.requestTimeoutMs,
        keepAliveTimeout: timeouts.keepAliveTimeoutMs,
        connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
        requireHostHeader: true,
        joinDuplicateHeaders: false,
        insecureHTTPParser: false,
        noDelay: true,
        ServerResponse: this.responseClass,
      },
      (req, res) => {
        const state = this.connections.get(req.socket);
        if (state) {
          state.inFlight += 1;
          res.once('close', () => {
            state.inFlight -= 1;
            state.idleSince = performance.now();
          });
        }
        if (this.draining) res.shouldKeepAlive = false;
        this.pipeline.handle(req, res, spec.protocol);
      },
    );
    server.on('connection', (socket: Socket) => {
      this.connections.set(socket, { inFlight: 0, idleSince: performance.now() });
      socket.once('close', () => this.connections.delete(socket));
    });
    server.maxRequestsPerSocket = limits.maxRequestsPerConnection;
    server.setTimeout(timeouts.idleTimeoutMs);
    server.on('clientError', (error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket) => {
      this.answerParseError(error, socket);
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(handle as never, () => {
        server.off('error', reject);
        // The socket must be exactly the one the master bound (see listeners.ts).
        const address = server.address();
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
    // net.Server's close stops accepting and calls back once every connection
    // has ended; http.Server's would also cut idle connections at once.
    const closed = Promise.all(
      this.servers.map((server) => new Promise<void>((resolve) => net.Server.prototype.close.call(server, () => resolve()))),
    );
    const sweep = setInterval(() => this.closeIdleConnections(DRAIN_IDLE_CLOSE_MS), DRAIN_SWEEP_MS);
    this.closeIdleConnections(DRAIN_IDLE_CLOSE_MS);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const server of this.servers) server.closeAllConnections();
        resolve();
      }, deadlineMs);
    });
    await Promise.race([closed, deadline]);
    clearInterval(sweep);
    clearTimeout(timer);
    await this.pipeline.close();
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
  private answerParseError(error: NodeJS.ErrnoException, socket: Socket): void {
    let code: ErrorCode | null = 'MALFORMED_REQUEST';
    if (error.code === 'HPE_HEADER_OVERFLOW') code = 'HEADERS_TOO_LARGE';
    else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') code = 'REQUEST_TIMEOUT';
    else if (error.code === 'ECONNRESET' || error.code === 'EPIPE') code = null;
    this.log.info(
      { event: code === null ? 'connection.reset' : ERRORS[code].event, parser: error.code, clientIp: socket.remoteAddress },
      'client error',
    );
    if (code !== null && socket.writable && socket.bytesWritten === 0) {
      socket.end(rawErrorResponse(code, this.config.responseHeaders));
    } else {
      socket.destroy();
    }
  }
}
