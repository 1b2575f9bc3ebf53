/**
 * Obtaining certificates from a provider ([ssl] provider = "acme" or
 * "cloudflare"): the interface between the master's certificate manager
 * (scheduling, storage in cert_dir, handing certificates to workers) and the
 * code that talks to a certificate authority.
 *
 * Everything here runs in the master. Errors are thrown as IssuanceError
 * with one line an operator can act on; no message ever holds a key, a
 * token or an API credential.
 */

/** A certificate as issued, PEM text. `keyPem` is the new private key, made locally. */
export interface IssuedCertificate {
  /** The leaf certificate. */
  readonly certPem: string;
  /** The intermediates, in order, or null when the CA sent none. */
  readonly chainPem: string | null;
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface Issuer {
  readonly kind: 'acme' | 'cloudflare';
  /**
   * Obtains one certificate for `names` (the first is the subject, all are
   * subjectAltNames; "*.example.com" allowed where the CA allows it).
   * @throws IssuanceError naming what failed (the challenge, the CA's problem document, ...).
   */
  issue(names: readonly string[], signal?: AbortSignal): Promise<IssuedCertificate>;
}

export class IssuanceError extends Error {
  override readonly name = 'IssuanceError';
}

const MESSAGE_MAX_CHARS = 400;

/** One line, bounded: errors go to logs and to the operator's terminal. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const line = text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
  return line.length > MESSAGE_MAX_CHARS ? `${line.slice(0, MESSAGE_MAX_CHARS)}...` : line;
}

/** The ACME challenge types ([ssl.challenges] preferred), in RFC 8555 / RFC 8737 spelling. */
export type ChallengeType = 'http-01' | 'tls-alpn-01' | 'dns-01';

/**
 * The key made locally for each issued certificate. ECDSA P-256 is the
 * default: smaller handshakes, and every client this server is for speaks it;
 * RSA 2048 for the few that do not.
 */
export type CertificateKeyType = 'ecdsa-p256' | 'rsa-2048';

/**
 * Where the master publishes the answers to ACME challenges so that the
 * workers serve them. `publish` resolves once every ready worker of the
 * serving generation serves the current set (or rejects after a timeout);
 * the CA is told to validate only then.
 */
export interface ChallengeBoard {
  setHttp01(token: string, keyAuthorization: string): void;
  clearHttp01(token: string): void;
  setTlsAlpn01(name: string, certPem: string, keyPem: string): void;
  clearTlsAlpn01(name: string): void;
  publish(): Promise<void>;
}

/** A DNS-01 provider: puts and removes the TXT record the CA looks up. */
export interface DnsProvider {
  readonly name: string;
  /** Publishes TXT `value` at `fqdn` ("_acme-challenge.example.com", no trailing dot). */
  present(fqdn: string, value: string, signal?: AbortSignal): Promise<void>;
  /** Removes what `present` published; called even when the order failed. */
  cleanup(fqdn: string, value: string, signal?: AbortSignal): Promise<void>;
}
