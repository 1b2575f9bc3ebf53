/**
 * The accept gate: what a connection passes before its first byte is read
 * by a parser. Access lists and bans ([security.ddos]), the PROXY protocol
 * header ([security.proxy_protocol]), and the master's server-wide limits
 * per client (max_connections, max_connections_per_ip,
 * connection_rate_per_ip). A connection refused here is closed unanswered;
 * one let in goes on to the HTTP (or TLS) server.
 */
import type net from 'node:net';
import type { Socket } from 'node:net';
import type { CompiledConfig } from '../../config/types.js';
import { CidrSet, clientKey } from '../../net/cidr.js';
import { withSuppressed, type Audit } from '../audit.js';
import type { MasterPort } from '../master-link.js';
import type { WorkerMetrics } from '../metrics.js';
import { setProxiedSource } from './peer.js';
import { handOver, readProxyHeader } from './proxy-protocol-reader.js';

/** The key limits and bans use, and whether the client is subject to them (not whitelisted, an address at all). */
interface Client {
  readonly ip: string;
  readonly counted: boolean;
}

export class ConnectionGate {
  readonly #whitelist: CidrSet;
  readonly #blacklist: CidrSet;
  /** Proxies whose forwarding headers are believed: many clients share their address. */
  readonly #forwardingProxies: CidrSet;
  #proxyTrust: CidrSet | null = null;

  constructor(
    private readonly config: CompiledConfig,
    private readonly link: MasterPort,
    private readonly metrics: WorkerMetrics,
    private readonly audit: Audit,
    /** Refused connections are audited at most once a second per client (audit.ts). */
    private readonly refusalThrottle: (key: string) => number | null,
  ) {
    this.#whitelist = new CidrSet(config.access.whitelist);
    this.#blacklist = new CidrSet(config.access.blacklist);
    this.#forwardingProxies = new CidrSet(config.forwarded.trustProxy ? config.forwarded.trustedProxies : []);
  }

  /**
   * A freshly accepted connection, paused: nothing is read until it is let
   * in, then it is handed to `server`.
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
  async accept(socket: Socket, server: net.Server): Promise<void> {
    socket.on('error', () => socket.destroy());
    let client = this.clientOf(socket.remoteAddress ?? '');
    if (!this.mayConnect(socket, client)) return;
    // A trusted forwarding proxy carries many clients on its address: they are
    // limited per request, by the address it names (access.ts), not here.
    if (client.counted && this.#forwardingProxies.has(client.ip)) client = { ip: client.ip, counted: false };
    if (this.config.proxyProtocol.enabled) {
      const { required, trustedProxies, headerTimeoutMs } = this.config.proxyProtocol;
      this.#proxyTrust ??= new CidrSet(trustedProxies);
      const result = await readProxyHeader(socket, { required, trusted: this.#proxyTrust, timeoutMs: headerTimeoutMs });
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
        this.refuse(socket, client.ip, verdict);
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

  private clientOf(address: string): Client {
    const ip = clientKey(address);
    return ip === null ? { ip: address, counted: false } : { ip, counted: !this.#whitelist.has(ip) };
  }

  /** False (and the connection closed) for a blacklisted or banned client. */
  private mayConnect(socket: Socket, client: Client): boolean {
    if (!client.counted) return true;
    if (this.#blacklist.has(client.ip)) this.refuse(socket, client.ip, 'blacklisted');
    else if (this.link.isBanned(client.ip)) this.refuse(socket, client.ip, 'banned');
    else return true;
    return false;
  }

  /** Closed at accept, nothing read; audited at most once a second per client and reason. */
  private refuse(socket: Socket, ip: string, reason: string): void {
    socket.destroy();
    const event =
      reason === 'blacklisted' ? 'connection.blacklisted' : reason === 'banned' ? 'connection.banned' : 'connection.limit_exceeded';
    this.metrics.rejection(event);
    const suppressed = this.refusalThrottle(`${reason} ${ip}`);
    if (suppressed === null) return;
    this.audit({ event, clientIp: ip, detail: withSuppressed(reason, suppressed) });
  }
}
