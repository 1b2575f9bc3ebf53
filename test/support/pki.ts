/**
 * Certificates for the TLS tests, made by the openssl command line at test
 * time: a CA, leaves it signs, and ACME TLS-ALPN-01 challenge certificates.
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export const fingerprintOf = (file: string): string => new X509Certificate(readFileSync(file)).fingerprint256;

/** A CA and leaf certificates signed by it, in `dir`. */
export class TestPki {
  constructor(readonly dir: string) {
    this.key('ca');
    openssl(
      'req',
      '-x509',
      '-new',
      '-key',
      this.file('ca.key'),
      '-subj',
      '/CN=miwidothttp test CA',
      '-days',
      '30',
      '-out',
      this.file('ca.crt'),
    );
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  key(name: string): string {
    const file = this.file(`${name}.key`);
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
    chmodSync(file, 0o600);
    return file;
  }

  /** `days` < 0 makes one already expired. */
  leaf(name: string, names: string[], days = 30): { cert: string; key: string } {
    const key = this.key(name);
    const csr = this.file(`${name}.csr`);
    openssl('req', '-new', '-key', key, '-subj', `/CN=${names[0]}`, '-out', csr);
    writeFileSync(this.file(`${name}.ext`), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
    openssl(
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      this.file('ca.crt'),
      '-CAkey',
      this.file('ca.key'),
      '-CAcreateserial',
      '-days',
      String(days),
      '-extfile',
      this.file(`${name}.ext`),
      '-out',
      this.file(`${name}.crt`),
    );
    return { cert: this.file(`${name}.crt`), key };
  }

  /**
   * A TLS-ALPN-01 challenge certificate (RFC 8737 §3): self-signed, for
   * `name` only, with the critical acmeIdentifier extension holding the
   * SHA-256 of `keyAuthorization`.
   */
  alpnChallenge(name: string, keyAuthorization: string): { cert: string; key: string } {
    const key = this.key(`alpn-${name}`);
    const cert = this.file(`alpn-${name}.crt`);
    const digest = createHash('sha256')
      .update(keyAuthorization)
      .digest('hex')
      .replace(/(..)(?!$)/g, '$1:');
    openssl(
      'req',
      '-x509',
      '-new',
      '-key',
      key,
      '-subj',
      `/CN=${name}`,
      '-days',
      '7',
      '-addext',
      `subjectAltName=DNS:${name}`,
      '-addext',
      `1.3.6.1.5.5.7.1.31=critical,DER:04:20:${digest}`,
      '-out',
      cert,
    );
    return { cert, key };
  }
}
