/**
 * The ACME challenges this worker answers while the master's certificate
 * manager has an order in validation (ACME_CHALLENGES, the whole set each
 * time): HTTP-01 key authorizations by token (RFC 8555 §8.3, answered by
 * pipeline/acme-challenge.ts) and TLS-ALPN-01 certificates by name
 * (RFC 8737, presented by tls-front.ts). The key of a challenge certificate
 * is kept only inside its secure context and never logged.
 */
import type * as tls from 'node:tls';
import { nodeTls } from '../node-builtins.js';
import type { Logger } from 'pino';
import type { AlpnChallenge } from '../ipc/messages.js';
import { tlsPolicy } from '../tls/policy.js';
import { parseDnsName } from '../tls/sni.js';

/** RFC 8555 §8.1: a token is base64url (no padding). Anything else is never looked up. */
export const ACME_TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

/**
 * A challenge handshake is the CA's, not a browser's: the default TLS
 * policy (Mozilla intermediate, TLS 1.2+), whatever [security] ciphers says,
 * so that offering acme-tls/1 never shows a scanner a weaker suite.
 */
const CHALLENGE_POLICY = tlsPolicy('1.2', undefined);

export class AcmeChallenges {
  #version = -1;
  #http01 = new Map<string, string>();
  #tlsAlpn01 = new Map<string, tls.SecureContext>();

  constructor(private readonly log: Logger | null = null) {}

  /** The version of the set served now; -1 before the first. */
  get version(): number {
    return this.#version;
  }

  /**
   * Serves the set `version` from now on, replacing the previous one. An
   * older version than the one served (a message overtaken) is ignored:
   * returns false, and it must not be acknowledged.
   */
  apply(version: number, http01: readonly (readonly [string, string])[], tlsAlpn01: readonly AlpnChallenge[]): boolean {
    if (version < this.#version) return false;
    const tokens = new Map<string, string>();
    for (const [token, keyAuthorization] of http01) {
      if (ACME_TOKEN.test(token)) tokens.set(token, keyAuthorization);
      else this.log?.warn({ event: 'acme.bad_challenge' }, 'HTTP-01 token from the master is not base64url; not served');
    }
    const contexts = new Map<string, tls.SecureContext>();
    for (const challenge of tlsAlpn01) {
      // RFC 8737 §3: never for a wildcard; the name is what the CA sends as SNI.
      const name = parseDnsName(challenge.name, false);
      if (name === null) {
        this.log?.warn({ event: 'acme.bad_challenge', name: challenge.name }, 'TLS-ALPN-01 name is not a host name; not served');
        continue;
      }
      try {
        contexts.set(name, nodeTls.createSecureContext({ key: challenge.keyPem, cert: challenge.certPem, ...CHALLENGE_POLICY }));
      } catch (error) {
        // The message of a PEM parse error names no key material.
        this.log?.warn(
          { event: 'acme.bad_challenge', name, code: (error as NodeJS.ErrnoException).code },
          'TLS-ALPN-01 certificate unusable; not served',
        );
      }
    }
    this.#version = version;
    this.#http01 = tokens;
    this.#tlsAlpn01 = contexts;
    return true;
  }

  /** The HTTP-01 key authorization for `token`, or null. */
  keyAuthorization(token: string): string | null {
    return this.#http01.get(token) ?? null;
  }

  /** The TLS-ALPN-01 context for the SNI `serverName`, or null. */
  alpnContext(serverName: string | false | undefined): tls.SecureContext | null {
    if (!serverName || this.#tlsAlpn01.size === 0) return null;
    const name = parseDnsName(serverName, false);
    return name === null ? null : (this.#tlsAlpn01.get(name) ?? null);
  }
}
