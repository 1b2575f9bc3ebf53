/**
 * Certificates obtained from a provider, kept in cert_dir (root-only):
 *
 *   <cert_dir>/<provider>/<authority>/<name>/cert.pem    the leaf
 *   <cert_dir>/<provider>/<authority>/<name>/chain.pem   intermediates (absent when none)
 *   <cert_dir>/<provider>/<authority>/<name>/key.pem     its private key, 0600
 *
 * ("*.example.com" is stored as "_wildcard.example.com"; the authority is
 * the ACME directory, as "<host>-<hash>", or "origin-ca".) Switching
 * provider or CA (staging to production) therefore obtains new certificates
 * instead of serving the other one's. A certificate is checked before it
 * replaces the stored one: it is written to a new directory, read back with
 * the checks manual certificates get, and only then renamed into place, so
 * a failed check or a crash leaves the old certificate whole.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { loadCertificate, type LoadedCertificate } from '../tls/certificates.js';
import type { IssuedCertificate } from '../tls/issuance/types.js';
import { privateDirectoryProblem, syncDirectory, writePrivateFile } from '../fs/private-file.js';

export interface StoreLocation {
  readonly certDir: string;
  readonly provider: string;
  /** Which CA of the provider: certificates of one are never served for another. */
  readonly authority: string;
}

function directoryOf(where: StoreLocation, name: string): string {
  return path.join(where.certDir, where.provider, where.authority, name.replace(/^\*\./, '_wildcard.'));
}

/** Makes `dir` (and any missing parent) a root-only directory; refuses an existing one that is not. */
export function ensurePrivateDirectory(dir: string): void {
  const problem = privateDirectoryProblem(dir);
  if (problem !== null) throw new Error(problem);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Reads and checks a stored certificate in `dir`; chain.pem may be absent, but a broken one is a problem. */
function loadFrom(dir: string, name: string): { ok: true; certificate: LoadedCertificate } | { ok: false; problem: string } {
  const chainFile = path.join(dir, 'chain.pem');
  const result = loadCertificate({
    name,
    certFile: path.join(dir, 'cert.pem'),
    keyFile: path.join(dir, 'key.pem'),
    ...(existsSync(chainFile) && { chainFile }),
  });
  return result.ok ? { ok: true, certificate: result.certificate } : { ok: false, problem: result.problem };
}

/** The stored certificate for `name`, or why there is none usable. */
export function loadIssued(
  where: StoreLocation,
  name: string,
): { ok: true; certificate: LoadedCertificate } | { ok: false; problem: string } {
  return loadFrom(directoryOf(where, name), name);
}

/**
 * Checks an issued certificate and, when it passes, makes it the stored one
 * for `name`. @throws Error naming the check that failed (the stored one is untouched).
 */
export function saveIssued(where: StoreLocation, name: string, issued: IssuedCertificate): LoadedCertificate {
  const dir = directoryOf(where, name);
  const parent = path.dirname(dir);
  ensurePrivateDirectory(where.certDir);
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  const staging = `${dir}.new-${process.pid}`;
  const retired = `${dir}.old-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  rmSync(retired, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o700 });
  try {
    writePrivateFile(path.join(staging, 'key.pem'), issued.keyPem);
    writePrivateFile(path.join(staging, 'cert.pem'), issued.certPem);
    if (issued.chainPem !== null) writePrivateFile(path.join(staging, 'chain.pem'), issued.chainPem);
    const loaded = loadFrom(staging, name);
    if (!loaded.ok) throw new Error(`the certificate received does not pass the checks: ${loaded.problem}`);
    if (existsSync(dir)) renameSync(dir, retired);
    renameSync(staging, dir);
    syncDirectory(parent);
    rmSync(retired, { recursive: true, force: true });
    return loaded.certificate;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
