/**
 * One upstream target and the connections to it: an undici Pool for each
 * kind of target (http://, https:// with the backend's TLS settings, unix:),
 * speaking HTTP/1.1 or HTTP/2 as the backend says, plus an HTTP/1.1 pool for
 * WebSocket upgrades when the requests go over HTTP/2 (an Upgrade is an
 * HTTP/1.1 mechanism, RFC 9113 §8.6).
 */
import { isIP } from 'node:net';
import { Pool } from 'undici';
import type { ProxyBackendSpec, ProxyTarget } from '../../config/types.js';
import { UpstreamPeer } from './upstreams.js';

type ConnectOptions = Exclude<NonNullable<Pool.Options['connect']>, (...args: never[]) => unknown>;

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
/** A unix: target has no host; this one names it in the request line's Host when the client's is not passed on. */
const SOCKET_HOST = 'localhost';

/** One upstream target: its connection pools plus its balancing and health state. */
export class UpstreamTarget extends UpstreamPeer {
  /** How the target appears in notes and logs: origin plus path prefix, or "unix:/path". */
  readonly label: string;
  /** Requests go here (HTTP/1.1 or HTTP/2). */
  readonly pool: Pool;
  /** Path of the target URL without its trailing slash: "" or "/api". */
  readonly pathPrefix: string;
  /** host[:port] of the target, the Host header when the client's is not passed on. */
  readonly hostHeader: string;
  /**
   * SNI and certificate name for an https target: server_name, else the
   * target's DNS name, so a preserved client Host does not decide which
   * certificate is verified (nginx proxy_ssl_name defaults to the
   * proxy_pass host). An IP literal cannot be an SNI name (RFC 6066 §3);
   * undici then derives it from the Host header sent.
   */
  readonly servername: string | undefined;
  readonly #options: Pool.Options & { connect: ConnectOptions };
  readonly #origin: string;
  #upgradePool: Pool | null = null;

  constructor(target: ProxyTarget, backend: ProxyBackendSpec) {
    super(target.weight);
    const socketPath = target.socketPath;
    const url = socketPath === null ? new URL(target.url) : new URL(`http://${SOCKET_HOST}`);
    this.pathPrefix = socketPath === null ? url.pathname.replace(/\/+$/, '') : '';
    this.label = socketPath === null ? url.origin + this.pathPrefix : target.url;
    this.hostHeader = url.host;
    const https = url.protocol === 'https:';
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const tls = https ? backend.tls : null;
    this.servername = https ? (tls?.serverName ?? (isIP(hostname) === 0 ? hostname : undefined)) : undefined;
    const h2 = backend.protocol === 'h2';
    this.#origin = url.origin;
    this.#options = {
      // No cap on connections to a target: with one, slow clients (a slow
      // read holds its upstream connection while it trickles) fill the pool
      // and every other request waits behind them in undici's queue —
      // measured with slowhttptest -X. Idle connections close after the
      // keep-alive timeout; without keep-alive each request closes its own.
      connections: null,
      pipelining: 1,
      keepAliveTimeout: UPSTREAM_KEEP_ALIVE_TIMEOUT_MS,
      keepAliveMaxTimeout: UPSTREAM_KEEP_ALIVE_MAX_TIMEOUT_MS,
      headersTimeout: backend.upstreamTimeoutMs,
      bodyTimeout: backend.upstreamTimeoutMs,
      ...(socketPath === null ? {} : { socketPath }),
      connect: {
        timeout: backend.connectTimeoutMs,
        ...(https && {
          // verify = false: any certificate (docs/proxy.md says what that gives away).
          rejectUnauthorized: tls?.verify ?? true,
          ...(tls?.pem?.ca != null && { ca: tls.pem.ca }),
          ...(tls?.pem?.cert != null && { cert: tls.pem.cert }),
          ...(tls?.pem?.key != null && { key: tls.pem.key }),
          ...(this.servername !== undefined && { servername: this.servername }),
        }),
      },
    };
    // undici negotiates h2 by ALPN over TLS unless told not to: HTTP/1.1 is
    // the default, which WebSocket upgrades and every HTTP/1.1 upstream need.
    this.pool = new Pool(
      url.origin,
      h2
        ? {
            ...this.#options,
            allowH2: true,
            connect: { ...this.#options.connect, preferH2: true },
            // http:// and unix: targets: HTTP/2 with prior knowledge (RFC 9113 §3.3), as gRPC servers expect.
            ...(!https && { useH2c: true }),
          }
        : { ...this.#options, allowH2: false },
    );
    if (!h2) this.#upgradePool = this.pool;
  }

  /** The pool WebSocket upgrades go through: HTTP/1.1 always. */
  get upgradePool(): Pool {
    this.#upgradePool ??= new Pool(this.#origin, { ...this.#options, allowH2: false });
    return this.#upgradePool;
  }

  async close(): Promise<void> {
    const pools = new Set([this.pool, this.#upgradePool].filter((pool): pool is Pool => pool !== null));
    await Promise.all([...pools].map((pool) => pool.close()));
  }
}
