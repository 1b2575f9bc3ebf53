/**
 * Certificates obtained from a provider, kept in cert_dir (root-only):
 *
 *   <cert_dir>/<provider>/<name>/cert.pem    the leaf
 *   <cert_dir>/<provider>/<name>/chain.pem   intermediates (absent when none)
 *   <cert_dir>/<provider>/<name>/key.pem     its private key, 0600
 *
 * ("*.example.com" is stored as "_wildcard.example.com".) One directory per
 * provider: switching provider obtains new certificates instead of serving
 * the other one's. They are read back with the checks manual certificates
 * get, so a torn write (key and certificate that do not match) or an expired
 * certificate is treated as missing and obtained again.
 */
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadCertificate, type LoadedCertificate } from '../tls/certificates.js';
import type { IssuedCertificate } from '../tls/issuance/types.js';

export interface StoreLocation {
  readonly certDir: string;
  readonly provider: string;
}

function directoryOf(where: StoreLocation, name: string): string {
  return path.join(where.certDir, where.provider, name.replace(/^\*\./, '_wildcard.'));
}

/** Makes `dir` and its parents root-only directories (0700). */
export function ensurePrivateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** The stored certificate for `name`, or why there is none usable. */
export function loadIssued(where: StoreLocation, name: string): { ok: true; certificate: LoadedCertificate } | { ok: false; problem: string } {
  const dir = directoryOf(where, name);
  const result = loadCertificate({ name, certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') });
  if (!result.ok) return { ok: false, problem: result.problem };
  const chain = loadCertificate({ name, certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem'), chainFile: path.join(dir, 'chain.pem') });
  // chain.pem is absent when the CA sent none.
  return { ok: true, certificate: chain.ok ? chain.certificate : result.certificate };
}

/** Writes an issued certificate, each file replaced atomically; the key is 0600 from its first byte. */
export function saveIssued(where: StoreLocation, name: string, issued: IssuedCertificate): void {
  const dir = directoryOf(where, name);
  ensurePrivateDirectory(dir);
  const put = (file: string, text: string): void => {
    const temporary = path.join(dir, `.${file}.${process.pid}.tmp`);
    writeFileSync(temporary, text, { mode: 0o600, flag: 'w' });
    renameSync(temporary, path.join(dir, file));
  };
  put('key.pem', issued.keyPem);
  put('cert.pem', issued.certPem);
  if (issued.chainPem === null) rmSync(path.join(dir, 'chain.pem'), { force: true });
  else put('chain.pem', issued.chainPem);
}
