/**
 * The master's side of TLS: reading the certificate and key files (root-only)
 * at each start and reload, and the key material it hands to the workers
 * over IPC (TLS_INIT). Nothing here is ever logged but names, dates and
 * problems: never a key.
 */
import type { Logger } from 'pino';
import type { TlsSpec } from '../config/types.js';
import { loadCertificate, type LoadedCertificate } from './certificates.js';

export interface CertificateMaterial {
  readonly name: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly chainPem: string | null;
}

/** Loads every configured certificate; throws naming the first domain that fails (a file changed since `check`). */
export function loadTlsMaterial(spec: TlsSpec, log: Logger): LoadedCertificate[] {
  return spec.certificates.map((files) => {
    const result = loadCertificate(files);
    for (const warning of result.warnings) log.warn({ domain: files.name }, `certificate: ${warning}`);
    if (!result.ok) throw new Error(`ssl.domains.${JSON.stringify(files.name)}: ${result.problem}`);
    return result.certificate;
  });
}

/** What a worker gets: the PEM text only. */
export function materialOf(certificates: readonly LoadedCertificate[]): CertificateMaterial[] {
  return certificates.map(({ name, certPem, keyPem, chainPem }) => ({ name, certPem, keyPem, chainPem }));
}
