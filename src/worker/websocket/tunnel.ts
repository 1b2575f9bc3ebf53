/**
 * A WebSocket connection once both sides switched protocols: bytes both
 * ways with backpressure, followed frame by frame (frames.ts), under the
 * connection rules every other request gets:
 *
 * - idle_timeout: no byte either way for that long and both ends are closed
 *   (nginx proxy_read_timeout / proxy_send_timeout do the same);
 * - write_timeout: an end that takes nothing we have queued for that long is
 *   cut. The client's end is watched like any connection (a socket by the
 *   connection sweep, connection/watch.ts; an HTTP/2 stream by http2.ts);
 *   the upstream's end by the sweep here;
 * - a client frame that breaks RFC 6455 (unmasked, reserved opcode, a long
 *   or fragmented control frame) never reaches the upstream: the client gets
 *   a close frame 1002 where a frame may go, the upstream connection is cut,
 *   and the event is audited;
 * - drain (reload, stop): each end gets a close frame 1001 "going away" at
 *   its next frame boundary and is ended; a frame that never ends is cut at
 *   the drain deadline with the connection.
 *
 * The client's connection stays counted against the connection limits
 * until it closes (the accept gate counts sockets, not requests).
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Audit } from '../audit.js';
import type { WorkerMetrics } from '../metrics.js';
import { CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, closeFrame, FrameStream } from './frames.js';

/** How often the upstream ends are checked for stalled writes. */
const TUNNEL_SWEEP_MS = 1000;
/** Audit event of a client breaking the framing: the one HTTP/2 and the parser use for a protocol fault. */
const PROTOCOL_ERROR_EVENT = 'connection.protocol_error';

export interface TunnelLimits {
  readonly idleTimeoutMs: number;
  readonly writeTimeoutMs: number;
}

/** Every open tunnel of one worker: the sweep of their upstream ends, and the drain. */
export class WebSocketTunnels {
  readonly #open = new Set<Tunnel>();
  readonly #sweep: NodeJS.Timeout;
  #goingAway = false;

  constructor(
    readonly limits: TunnelLimits,
    readonly audit: Audit,
    readonly metrics: WorkerMetrics | null,
  ) {
    this.#sweep = setInterval(() => this.#sweepStalled(), TUNNEL_SWEEP_MS);
    this.#sweep.unref();
  }

  get size(): number {
    return this.#open.size;
  }

  /** Joins `client` and `upstream`; `clientIp` names the client in audit events. */
  open(client: Duplex, upstream: Socket, clientIp: string): Tunnel {
    const tunnel = new Tunnel(this, client, upstream, clientIp);
    this.#open.add(tunnel);
    tunnel.onClose(() => this.#open.delete(tunnel));
    if (this.#goingAway) tunnel.goAway();
    return tunnel;
  }

  /** The server drains: every tunnel says 1001 to both ends and ends; tunnels opened from now on too. */
  goAway(): void {
    this.#goingAway = true;
    for (const tunnel of this.#open) tunnel.goAway();
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const tunnel of this.#open) tunnel.destroy();
  }

  #sweepStalled(): void {
    const now = performance.now();
    for (const tunnel of this.#open) tunnel.checkUpstreamWrites(now, this.limits.writeTimeoutMs);
  }
}

export class Tunnel {
  readonly #fromClient = new FrameStream(true);
  readonly #fromUpstream = new FrameStream(false);
  readonly #idle: NodeJS.Timeout;
  /** A close frame is owed to that end at the next boundary of the frames going to it. */
  #closeClientAtBoundary = false;
  #closeUpstreamAtBoundary = false;
  /** Nothing more goes that way. */
  #toClientDone = false;
  #toUpstreamDone = false;
  #closed = false;
  readonly #closeListeners: (() => void)[] = [];
  #upstreamWrittenAtSweep = 0;
  #upstreamStalledSince: number | null = null;

  constructor(
    private readonly tunnels: WebSocketTunnels,
    private readonly client: Duplex,
    private readonly upstream: Socket,
    private readonly clientIp: string,
  ) {
    this.#idle = setTimeout(() => this.#timedOut(), tunnels.limits.idleTimeoutMs);
    this.#idle.unref();
    client.on('data', (chunk: Buffer) => this.#clientData(chunk));
    upstream.on('data', (chunk: Buffer) => this.#upstreamData(chunk));
    client.on('drain', () => upstream.resume());
    upstream.on('drain', () => client.resume());
    // A half-close passes on. The client gone, the upstream is cut; the
    // upstream gone, the client gets what was queued for it, then the end
    // (it sees the close frame the upstream sent, or an abnormal closure).
    client.on('end', () => this.#endUpstream());
    upstream.on('end', () => this.#endClient());
    client.on('error', () => client.destroy());
    upstream.on('error', () => upstream.destroy());
    let open = 2;
    const closed = (): void => {
      if (--open === 0) this.#finish();
    };
    client.once('close', () => {
      upstream.destroy();
      closed();
    });
    upstream.once('close', () => {
      this.#endClient();
      closed();
    });
    client.resume();
    upstream.resume();
  }

  onClose(listener: () => void): void {
    this.#closeListeners.push(listener);
  }

  /** Drain: close frames 1001 to both ends, each where a frame may go. */
  goAway(): void {
    if (this.#closed) return;
    this.#closeClientAtBoundary = true;
    this.#closeUpstreamAtBoundary = true;
    if (this.#fromUpstream.atBoundary) this.#sendClose('client', CLOSE_GOING_AWAY);
    if (this.#fromClient.atBoundary) this.#sendClose('upstream', CLOSE_GOING_AWAY);
  }

  /** Both ends cut at once (a write stall, idle_timeout, the end of a drain). */
  destroy(): void {
    this.client.destroy();
    this.upstream.destroy();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idle);
    for (const listener of this.#closeListeners) listener();
  }

  /** write_timeout on the upstream's end: bytes queued to it that have not moved for that long. */
  checkUpstreamWrites(now: number, limitMs: number): void {
    const upstream = this.upstream;
    if (upstream.writableLength === 0 || upstream.bytesWritten !== this.#upstreamWrittenAtSweep) {
      this.#upstreamWrittenAtSweep = upstream.bytesWritten;
      this.#upstreamStalledSince = null;
      return;
    }
    this.#upstreamStalledSince ??= now;
    if (now - this.#upstreamStalledSince >= limitMs) this.destroy();
  }

  #clientData(chunk: Buffer): void {
    this.#idle.refresh();
    if (this.#toUpstreamDone || this.upstream.destroyed) return;
    const read = this.#fromClient.read(chunk, this.#closeUpstreamAtBoundary);
    let writable = true;
    for (const piece of read.forward) writable = this.upstream.write(piece);
    if (read.violation !== null) {
      this.#protocolError(read.violation);
      return;
    }
    if (read.stopped) this.#sendClose('upstream', CLOSE_GOING_AWAY);
    else if (!writable) this.client.pause();
  }

  #upstreamData(chunk: Buffer): void {
    this.#idle.refresh();
    if (this.#toClientDone || this.client.destroyed) return;
    const read = this.#fromUpstream.read(chunk, this.#closeClientAtBoundary);
    let writable = true;
    for (const piece of read.forward) writable = this.client.write(piece);
    if (read.stopped) this.#sendClose('client', CLOSE_GOING_AWAY);
    else if (!writable) this.upstream.pause();
  }

  /** A client frame broke RFC 6455: it never reaches the upstream; the client is told 1002 if a frame may go to it now. */
  #protocolError(violation: string): void {
    this.tunnels.metrics?.rejection(PROTOCOL_ERROR_EVENT);
    this.tunnels.audit({ event: PROTOCOL_ERROR_EVENT, clientIp: this.clientIp, detail: `WebSocket: ${violation}` });
    this.#toUpstreamDone = true;
    this.upstream.destroy();
    if (this.#fromUpstream.atBoundary && !this.#toClientDone) this.#sendClose('client', CLOSE_PROTOCOL_ERROR);
    else this.destroy();
  }

  /** Sends a close frame to one end (masked towards the upstream: this proxy is its client, RFC 6455 §5.3) and ends it. */
  #sendClose(to: 'client' | 'upstream', code: number): void {
    if (to === 'client') {
      if (this.#toClientDone || this.client.destroyed) return;
      this.#toClientDone = true;
      this.client.end(closeFrame(code, false));
    } else {
      if (this.#toUpstreamDone || this.upstream.destroyed) return;
      this.#toUpstreamDone = true;
      this.upstream.end(closeFrame(code, true));
    }
  }

  #endClient(): void {
    if (this.#toClientDone) return;
    this.#toClientDone = true;
    if (!this.client.destroyed) this.client.end();
  }

  #endUpstream(): void {
    if (this.#toUpstreamDone) return;
    this.#toUpstreamDone = true;
    if (!this.upstream.destroyed) this.upstream.end();
  }

  /** idle_timeout: nothing moved either way. Not an attack, so not audited (an idle HTTP connection is not either). */
  #timedOut(): void {
    this.destroy();
  }
}
