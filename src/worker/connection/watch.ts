/**
 * The worker's open connections, from the moment one speaks HTTP (over TLS:
 * once its handshake is done) until it closes, and the sweeps that keep
 * slow clients from holding them: slow heads (min_data_rate), stalled
 * writes (write_timeout), and while draining, idle keep-alive connections.
 * What is HTTP/2's own (sessions between requests, one stalled stream) is
 * judged by http2.ts, which the sweep asks for each session.
 */
import type { ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { HeaderPolicy, Protocol, TimeoutsSpec } from '../../config/types.js';
import type { Audit } from '../audit.js';
import { ERRORS, rawErrorResponse } from '../errors.js';
import type { WorkerMetrics } from '../metrics.js';
import { policyHeaders } from '../response-headers.js';
import { peerAddress } from './peer.js';

/** How often connections are swept for slow heads (min_data_rate) and stalled writes (write_timeout). */
const CONNECTION_SWEEP_MS = 1000;
/** A head gets this long before its data rate counts (TCP slow start, a client's think time). */
const HEAD_RATE_GRACE_MS = 1000;
/** Past keepalive_timeout, before an idle HTTP/1 connection is closed (Node's own keep-alive timer gives as much). */
const KEEP_ALIVE_GRACE_MS = 1000;

/** The bytes a connection has carried either way. */
export function bytesMoved(socket: Socket): number {
  return socket.bytesRead + socket.bytesWritten;
}

/** One open connection, as the sweeps and the HTTP/2 session policy see it. */
export interface ConnectionState {
  /** The TCP socket, or over TLS the TLS socket the requests arrive on. */
  readonly socket: Socket;
  readonly protocol: Protocol;
  /** The client's address as the pipeline starts from it (peer.ts), read once here rather than off each request's socket. */
  readonly peerIp: string;
  /** The HTTP/2 session on this connection, or null for HTTP/1. */
  session: ServerHttp2Session | null;
  /** The connection became a WebSocket tunnel (server.ts), which keeps its own idle timer. */
  tunnelled: boolean;
  /** We closed it for cause (already audited): the session's own error is not news. */
  refused: boolean;
  inFlight: number;
  /** HTTP/1 requests the connection has carried, for max_request_per_connection (server.ts). */
  requests: number;
  idleSince: number;
  /** Slowloris defence: socket.bytesRead when the last request ended, and when the next head began arriving. */
  bytesReadAtIdle: number;
  headStartedAt: number | null;
  /** Slow-read defence: bytes written at the last sweep, and since when nothing moved. */
  bytesWrittenAtSweep: number;
  stalledSince: number | null;
  /** idle_timeout: bytes read and written at the last sweep that saw them change, and when. */
  bytesMoved: number;
  movedAt: number;
}

/**
 * HTTP/2 session policy's part of the sweep (http2.ts): true when it closed
 * the session, which then needs no other look.
 */
export type SessionSweep = (state: ConnectionState, session: ServerHttp2Session, now: number) => boolean;

export class ConnectionTable {
  readonly #connections = new Map<Socket, ConnectionState>();
  readonly #sweep: NodeJS.Timeout;

  constructor(
    private readonly timeouts: TimeoutsSpec,
    private readonly headerPolicy: HeaderPolicy,
    private readonly metrics: WorkerMetrics,
    private readonly audit: Audit,
    private readonly sweepSession: SessionSweep,
  ) {
    this.#sweep = setInterval(() => this.sweep(), CONNECTION_SWEEP_MS);
    this.#sweep.unref();
  }

  get size(): number {
    return this.#connections.size;
  }

  get(socket: Socket): ConnectionState | undefined {
    return this.#connections.get(socket);
  }

  /** Starts keeping book of a connection that now speaks HTTP. */
  track(socket: Socket, protocol: Protocol): ConnectionState {
    const state: ConnectionState = {
      socket,
      protocol,
      peerIp: peerAddress(socket),
      session: null,
      tunnelled: false,
      refused: false,
      inFlight: 0,
      requests: 0,
      idleSince: performance.now(),
      bytesReadAtIdle: socket.bytesRead,
      headStartedAt: null,
      bytesWrittenAtSweep: 0,
      stalledSince: null,
      bytesMoved: bytesMoved(socket),
      movedAt: performance.now(),
    };
    this.#connections.set(socket, state);
    socket.once('close', () => this.#connections.delete(socket));
    return state;
  }

  /** A request began on the connection: its head is complete, the slow-head clock stops. */
  requestStarted(state: ConnectionState): void {
    state.inFlight += 1;
    state.headStartedAt = null;
  }

  /** A response closed: the connection is idle from now on, and the next head's bytes count from here. */
  requestEnded(state: ConnectionState): void {
    state.inFlight -= 1;
    state.idleSince = performance.now();
    state.bytesReadAtIdle = state.socket.bytesRead;
  }

  /** The security headers a raw error answer on `socket` carries (HSTS only over HTTPS). */
  errorHeaders(socket: Socket): readonly (readonly [string, string])[] {
    return policyHeaders(this.headerPolicy, this.#connections.get(socket)?.protocol ?? 'http');
  }

  /** While draining: HTTP/2 sessions get GOAWAY at once (their streams finish, then they close); idle HTTP/1 connections are ended. */
  closeIdle(idleForMs: number): void {
    const now = performance.now();
    for (const [socket, state] of this.#connections) {
      if (state.session !== null) state.session.close();
      else if (state.inFlight === 0 && now - state.idleSince >= idleForMs) socket.end();
    }
  }

  /** The end of a drain: whatever is still open is cut, and the sweeps stop. */
  closeAll(): void {
    for (const socket of this.#connections.keys()) socket.destroy();
    clearInterval(this.#sweep);
  }

  /**
   * Once a second, over every connection; these are the HTTP/1 socket's
   * only timers (Node's, which it re-arms several times a request, are left
   * unset: server.ts):
   *
   * Idle (idle_timeout): no byte either way for that long, requests in
   * flight or not, closes the connection (an HTTP/2 session with it). A
   * WebSocket tunnel is its own to time (websocket/tunnel.ts).
   *
   * Between HTTP/1 requests: a connection with no request in flight and no
   * byte of the next one for keepalive_timeout (and a second's grace past
   * what its responses announced, so a client reusing it at the last moment
   * does not meet a close) is closed. Slowloris (min_data_rate): a request
   * head arriving slower than the minimum rate, past its first second, gets
   * 408 and is closed. The parser consumes the socket natively, but
   * socket.bytesRead still counts what it read since the last request ended.
   * HTTP/2 frames arrive between requests too (PING, SETTINGS,
   * WINDOW_UPDATE), so a session is judged by sweepSession instead.
   *
   * Slow read (write_timeout): a client that stops reading leaves our
   * answer queued in the socket. A connection whose queued bytes have not
   * moved for write_timeout is cut; nothing more can be written to it.
   * (One HTTP/2 stream stalled by its flow-control window is cut alone: http2.ts.)
   */
  private sweep(): void {
    const now = performance.now();
    const limitMs = this.timeouts.writeTimeoutMs;
    for (const [socket, state] of this.#connections) {
      if (this.idledOut(socket, state, now)) continue;
      if (state.session !== null) {
        if (this.sweepSession(state, state.session, now)) continue;
      } else if (state.inFlight === 0 && this.betweenRequests(socket, state, now)) continue;
      if (socket.writableLength === 0 || socket.bytesWritten !== state.bytesWrittenAtSweep) {
        state.bytesWrittenAtSweep = socket.bytesWritten;
        state.stalledSince = null;
        continue;
      }
      state.stalledSince ??= now;
      if (now - state.stalledSince >= limitMs) {
        this.audit({ event: 'response.write_timeout', clientIp: state.peerIp, detail: `${socket.writableLength} bytes queued` });
        socket.destroy();
      }
    }
  }

  /** idle_timeout: true when the connection carried no byte either way for that long, and is closed. */
  private idledOut(socket: Socket, state: ConnectionState, now: number): boolean {
    const moved = bytesMoved(socket);
    if (moved !== state.bytesMoved) {
      state.bytesMoved = moved;
      state.movedAt = now;
      return false;
    }
    if (state.tunnelled || now - state.movedAt < this.timeouts.idleTimeoutMs) return false;
    if (state.session !== null) state.session.destroy();
    else socket.destroy();
    return true;
  }

  /** An HTTP/1 connection with no request in flight: true when it is closed, kept alive too long or sending its next head too slowly. */
  private betweenRequests(socket: Socket, state: ConnectionState, now: number): boolean {
    const headBytes = socket.bytesRead - state.bytesReadAtIdle;
    if (headBytes === 0) {
      if (now - state.idleSince < this.timeouts.keepAliveTimeoutMs + KEEP_ALIVE_GRACE_MS) return false;
      socket.destroy();
      return true;
    }
    const minRate = this.timeouts.minDataRateBytesPerSec;
    if (minRate === 0) return false;
    state.headStartedAt ??= now;
    const elapsedMs = now - state.headStartedAt;
    if (elapsedMs < HEAD_RATE_GRACE_MS || (headBytes * 1000) / elapsedMs >= minRate) return false;
    this.metrics.rejection(ERRORS.SLOW_CLIENT.event);
    this.audit({
      event: ERRORS.SLOW_CLIENT.event,
      status: 408,
      clientIp: state.peerIp,
      detail: `head at ${Math.round((headBytes * 1000) / elapsedMs)} B/s`,
    });
    // No request is in flight: the connection is at a message boundary, an answer can go out.
    if (socket.writable) socket.end(rawErrorResponse('SLOW_CLIENT', this.errorHeaders(socket)));
    else socket.destroy();
    return true;
  }
}
