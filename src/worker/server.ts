/**
 * The HTTP servers of one worker, one per inherited listening socket. The
 * worker never binds: it calls listen() on the bound socket the master sent.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { CompiledConfig, ListenerSpec } from '../config/types.js';
import { ERRORS, rawErrorResponse, type ErrorCode } from './errors.js';
import { createPipeline, type Pipeline } from './pipeline/index.js';

/** How often Node checks header/request timeouts; its default (30 s) lets slow clients linger. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

export class WorkerServer {
  private readonly servers: http.Server[] = [];
  private readonly pipeline: Pipeline;
  private draining = false;

  constructor(
    private readonly config: CompiledConfig,
    private readonly log: Logger,
  ) {
    this.pipeline = createPipeline(config, log);
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
      },
      (req, res) => {
        if (this.draining) res.shouldKeepAlive = false;
        this.pipeline.handle(req, res, spec.protocol);
      },
    );
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
    const closed = Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const server of this.servers) server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const server of this.servers) server.closeAllConnections();
        resolve();
      }, deadlineMs);
    });
    await Promise.race([closed, deadline]);
    clearTimeout(timer);
    await this.pipeline.close();
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
