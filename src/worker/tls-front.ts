/**
 * The TLS side of the HTTPS listeners: certificates by SNI, the protocol by
 * ALPN, and ACME TLS-ALPN-01 challenges.
 *
 * Each HTTPS listener has its own tls.Server, fed the connections server.ts
 * let in; a finished handshake is handed on by the protocol it negotiated
 * (server.ts): "h2" to the HTTP/2 server, "http/1.1" (or no ALPN) to the
 * HTTP/1 server, "acme-tls/1" nowhere. HTTP/2's own createSecureServer is
 * not used: it sets ALPNProtocols itself, and a tls.Server refuses
 * ALPNProtocols together with the ALPNCallback this needs.
 *
 * Certificates change while serving (TLS_CERTS): the SNI table is replaced
 * whole, and so is each server's default context (the certificate for
 * clients that send no SNI). Handshakes already done keep theirs; every
 * later one sees the new set. With no certificate at all (names whose
 * certificate is not issued yet) a handshake fails with an alert
 * (tls.handshake_failed), and the worker serves on.
 *
 * TLS-ALPN-01 (RFC 8737): Node calls the ALPN callback before the SNI
 * callback (test/system/acme-worker.test.ts pins it), both with the TLS socket as
 * `this`. A client that offers "acme-tls/1" for a name with a challenge gets
 * that protocol, and then, from the SNI callback, the challenge certificate;
 * such a connection is closed once its handshake is done (RFC 8737 §3).
 */
import type { Socket } from 'node:net';
import type * as tls from 'node:tls';
import { nodeTls } from '../node-builtins.js';
import type { Logger } from 'pino';
import type { TlsSpec } from '../config/types.js';
import type { CertificateMaterial } from '../tls/material.js';
import { tlsPolicy, type TlsPolicy } from '../tls/policy.js';
import { SniTable } from '../tls/sni.js';
import type { AcmeChallenges } from './acme-challenges.js';
import type { WorkerMetrics } from './metrics.js';

/** RFC 8737 §6.2: the ALPN protocol of the TLS-ALPN-01 challenge. */
export const ACME_TLS_PROTOCOL = 'acme-tls/1';

/** What the master sent for TLS (TLS_INIT, then TLS_CERTS and TLS_TICKET_KEY). */
export interface TlsMaterial {
  readonly certificates: readonly CertificateMaterial[];
  /** Base64, 48 bytes: shared by every worker so sessions resume across them. */
  readonly ticketKey: string;
  readonly sessionIdContext: string;
}

export class TlsFront {
  readonly #spec: TlsSpec;
  readonly #policy: TlsPolicy;
  readonly #servers: tls.Server[] = [];
  readonly #sessionIdContext: string;
  #ticketKey: Buffer;
  #contexts = new SniTable<tls.SecureContext>();
  #defaultOptions: tls.SecureContextOptions;
  /** Handshakes for which the ALPN callback chose acme-tls/1: the SNI callback presents the challenge's certificate. */
  readonly #challengeHandshakes = new WeakMap<tls.TLSSocket, tls.SecureContext>();

  constructor(
    spec: TlsSpec,
    material: TlsMaterial,
    private readonly challenges: AcmeChallenges,
    private readonly log: Logger,
    private readonly metrics: WorkerMetrics,
  ) {
    this.#spec = spec;
    this.#policy = tlsPolicy(spec.minVersion, spec.ciphers ?? undefined);
    this.#sessionIdContext = material.sessionIdContext;
    this.#ticketKey = Buffer.from(material.ticketKey, 'base64');
    this.#defaultOptions = this.#load(material.certificates);
  }

  /** A tls.Server for one HTTPS listener; `onSecure` gets each finished handshake but challenge ones. */
  createServer(onSecure: (socket: tls.TLSSocket) => void): tls.Server {
    const front = this;
    const server = nodeTls.createServer({
      ...this.#defaultOptions,
      ticketKeys: this.#ticketKey,
      handshakeTimeout: this.#spec.handshakeTimeoutMs,
      // Called with the handshake's socket as `this` (see the file comment).
      ALPNCallback(this: tls.TLSSocket, { servername, protocols }) {
        return front.#chooseProtocol(this, servername, protocols);
      },
      SNICallback(this: tls.TLSSocket, serverName, callback) {
        const challenge = front.#challengeHandshakes.get(this);
        if (challenge !== undefined) {
          callback(null, challenge);
          return;
        }
        // undefined: the server's default context (the first certificate, or none).
        callback(null, front.#contexts.match(serverName) ?? undefined);
      },
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      if (socket.alpnProtocol === ACME_TLS_PROTOCOL) {
        // RFC 8737 §3: the handshake was the answer; this connection carries no application data.
        this.log.debug(
          { event: 'acme.tls_alpn_01', clientIp: socket.remoteAddress, name: socket.servername },
          'TLS-ALPN-01 challenge handshake',
        );
        socket.on('error', () => socket.destroy());
        socket.end(() => socket.destroy());
        return;
      }
      onSecure(socket);
    });
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: Socket) => {
      // No certificate for the name, no shared protocol, version or cipher, a handshake too slow: the client got an alert.
      this.metrics.rejection('tls.handshake_failed');
      this.log.debug({ event: 'tls.handshake_failed', clientIp: socket.remoteAddress, code: error.code }, 'TLS handshake failed');
      socket.destroy();
    });
    this.#servers.push(server);
    return server;
  }

  /**
   * RFC 7301 §3.2: the server picks. acme-tls/1 only for a name with a
   * challenge; then h2 over http/1.1. A client that offers neither (nor
   * acme-tls/1 with a challenge) gets the no_application_protocol alert.
   * A client that sends no ALPN at all never gets here and speaks HTTP/1.1.
   */
  #chooseProtocol(socket: tls.TLSSocket, serverName: string | undefined, protocols: readonly string[]): string | undefined {
    if (protocols.includes(ACME_TLS_PROTOCOL)) {
      const challenge = this.challenges.alpnContext(serverName);
      if (challenge !== null) {
        this.#challengeHandshakes.set(socket, challenge);
        return ACME_TLS_PROTOCOL;
      }
    }
    if (protocols.includes('h2')) return 'h2';
    if (protocols.includes('http/1.1')) return 'http/1.1';
    return undefined;
  }

  /** TLS_CERTS: the whole set, for every handshake from now on. */
  setCertificates(certificates: readonly CertificateMaterial[]): void {
    this.#defaultOptions = this.#load(certificates);
    for (const server of this.#servers) server.setSecureContext({ ...this.#defaultOptions, ticketKeys: this.#ticketKey });
  }

  /** TLS_TICKET_KEY: every server takes the master's new key at once. */
  setTicketKey(ticketKey: string): void {
    this.#ticketKey = Buffer.from(ticketKey, 'base64');
    for (const server of this.#servers) server.setTicketKeys(this.#ticketKey);
  }

  /**
   * Builds the SNI table for `certificates` and returns the default
   * context's options: the first certificate (served to clients without SNI
   * or with a name no certificate covers), or none. A certificate the
   * master sent is valid (checked there); one that cannot be loaded here is
   * logged by name and left out, never fatal.
   */
  #load(certificates: readonly CertificateMaterial[]): tls.SecureContextOptions {
    const contexts = new SniTable<tls.SecureContext>();
    let first: tls.SecureContextOptions | null = null;
    for (const certificate of certificates) {
      const options = this.#contextOptions(certificate);
      try {
        contexts.add(certificate.name, nodeTls.createSecureContext(options));
        first ??= options;
      } catch (error) {
        this.log.error(
          { event: 'tls.certificate_unusable', domain: certificate.name, code: (error as NodeJS.ErrnoException).code },
          'certificate not loaded',
        );
      }
    }
    this.#contexts = contexts;
    return first ?? { ...this.#policy, sessionIdContext: this.#sessionIdContext };
  }

  #contextOptions(certificate: CertificateMaterial): tls.SecureContextOptions {
    return {
      key: certificate.keyPem,
      cert: certificate.chainPem === null ? certificate.certPem : `${certificate.certPem}\n${certificate.chainPem}`,
      ...this.#policy,
      sessionIdContext: this.#sessionIdContext,
    };
  }
}
