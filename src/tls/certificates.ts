/**
 * Loading and checking manual certificates (`[ssl.domains."name"]`).
 *
 * Runs in the master, which can read root-only key files; the PEM text it
 * returns is what the master sends to workers. Every check the master can do
 * before a worker builds a `tls.SecureContext` is done here, so `check` and a
 * reload report a wrong file instead of a worker failing at handshake time.
 *
 * No message this module produces ever contains key material: problems name
 * files by path and failures by errno or kind, never by a library message
 * that might quote what it could not parse.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { dnsNameCovers, parseDnsName } from './sni.js';

/** The files of one `[ssl.domains."name"]` entry. */
export interface CertificateFiles {
  /** The `[ssl.domains."name"]` key: "example.com" or "*.example.com". */
  name: string;
  certFile: string;
  keyFile: string;
  chainFile?: string;
}

/** A certificate that passed every check, ready to send to workers. */
export interface LoadedCertificate {
  name: string;
  /** The leaf certificate alone, re-encoded as PEM (anything else in cert_file is dropped). */
  certPem: string;
  /** The private key as PKCS#8 PEM, normalised from whatever form key_file held. */
  keyPem: string;
  /** Intermediates (after the leaf in cert_file, then chain_file), leaf's issuer first; null when none. */
  chainPem: string | null;
  /** DNS subjectAltNames, lower-case; the subject CN when the certificate has no DNS SAN. */
  subjectNames: string[];
  /** Issuer distinguished name, one "KEY=value" per line, as Node prints it. */
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER, colon-separated upper-case hex. */
  fingerprint256: string;
}

/** What `miwidothttp certs` shows of a certificate: never the key. */
export type CertificateInfo = Pick<LoadedCertificate, 'name' | 'subjectNames' | 'issuer' | 'notBefore' | 'notAfter' | 'fingerprint256'>;

/** What went wrong, for tests and callers that branch on it; `problem` is the text for people. */
export type CertificateProblemCode =
  | 'invalid_name'
  | 'unreadable_file'
  | 'not_a_file'
  | 'file_too_large'
  | 'bad_certificate'
  | 'bad_key'
  | 'encrypted_key'
  | 'weak_key'
  | 'key_mismatch'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_chain'
  | 'chain_mismatch'
  | 'name_not_covered';

/** Result of `loadCertificate`; `warnings` are worth logging but do not stop the server. */
export type CertificateLoadResult =
  | { ok: true; certificate: LoadedCertificate; warnings: string[] }
  | { ok: false; code: CertificateProblemCode; problem: string; warnings: string[] };

/** Warn when a certificate expires within this many days (manual certificates are not renewed for you). */
export const EXPIRY_WARNING_DAYS = 14;

/** Certificates, keys and chains are a few KiB; a bigger file is a wrong path (or /dev/zero). */
const MAX_PEM_FILE_BYTES = 1024 * 1024;

/** Below this, RSA keys are refused (NIST SP 800-131A; OpenSSL security level 2). */
const MIN_RSA_BITS = 2048;

const DAY_MS = 24 * 60 * 60 * 1000;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?-----END CERTIFICATE-----/g;
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

class CertificateProblem extends Error {
  constructor(
    readonly code: CertificateProblemCode,
    message: string,
  ) {
    super(message);
  }
}

type FileRole = 'cert_file' | 'key_file' | 'chain_file';

/**
 * Reads one file without following it into a device or FIFO: opened
 * non-blocking, checked to be a regular file of bounded size on the same
 * descriptor (no window between the check and the read).
 */
function readPemFile(role: FileRole, path: string): { text: Buffer; stats: Stats } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    throw new CertificateProblem('unreadable_file', `cannot read ${role} ${path}: ${errorCode(error)}`);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new CertificateProblem('not_a_file', `${role} ${path} is not a regular file`);
    if (stats.size > MAX_PEM_FILE_BYTES) {
      throw new CertificateProblem('file_too_large', `${role} ${path} is larger than ${MAX_PEM_FILE_BYTES} bytes`);
    }
    const text = Buffer.alloc(stats.size);
    let filled = 0;
    while (filled < text.length) {
      const count = readSync(fd, text, filled, text.length - filled, filled);
      if (count === 0) break;
      filled += count;
    }
    return { text: text.subarray(0, filled), stats };
  } catch (error) {
    if (error instanceof CertificateProblem) throw error;
    throw new CertificateProblem('unreadable_file', `cannot read ${role} ${path}: ${errorCode(error)}`);
  } finally {
    closeSync(fd);
  }
}

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : 'unknown error';
}

/** All certificates in a PEM file, or the one DER certificate the file is. */
function parseCertificates(role: FileRole, path: string, text: Buffer): X509Certificate[] {
  const blocks = text.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  try {
    if (blocks.length === 0) return [new X509Certificate(text)];
    return blocks.map((block) => new X509Certificate(block));
  } catch {
    const code = role === 'chain_file' ? 'bad_chain' : 'bad_certificate';
    throw new CertificateProblem(code, `${role} ${path} does not contain a valid certificate`);
  }
}

function parsePrivateKey(path: string, text: Buffer): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (error) {
    if (errorCode(error) === 'ERR_MISSING_PASSPHRASE') {
      throw new CertificateProblem('encrypted_key', `key_file ${path} is encrypted; passphrases are not supported`);
    }
    // The library's message is not passed on: it may describe the contents.
    throw new CertificateProblem('bad_key', `key_file ${path} does not contain a valid private key`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.asymmetricKeyType?.startsWith('rsa') === true && bits !== undefined && bits < MIN_RSA_BITS) {
    throw new CertificateProblem('weak_key', `key_file ${path} is a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`);
  }
  return key;
}

/**
 * Splits Node's `subjectAltName` text ("DNS:a.example, IP Address:192.0.2.1").
 * Since CVE-2021-44532 Node quotes a value that contains a comma or quote as
 * a JSON string, so entries are read one by one rather than split on ", ".
 */
function parseSubjectAltNames(text: string): [type: string, value: string][] {
  const entries: [string, string][] = [];
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) break;
    const type = text.slice(at, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      end += 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        value = '';
      }
    } else {
      end = text.indexOf(', ', colon);
      if (end < 0) end = text.length;
      value = text.slice(colon + 1, end);
    }
    entries.push([type, value]);
    at = text.startsWith(', ', end) ? end + 2 : end;
  }
  return entries;
}

/** The names a certificate is for: its DNS SANs, else its CN (RFC 6125 §6.4.4). */
function certificateNames(leaf: X509Certificate): { names: string[]; fromCommonName: boolean } {
  const dns = parseSubjectAltNames(leaf.subjectAltName ?? '')
    .filter(([type]) => type === 'DNS')
    .map(([, value]) => value.toLowerCase());
  if (dns.length > 0) return { names: dns, fromCommonName: false };
  const commonNames = leaf.subject
    .split('\n')
    .filter((line) => line.startsWith('CN='))
    .map((line) => line.slice(3).toLowerCase());
  return { names: commonNames.slice(-1), fromCommonName: true };
}

function subjectOf(certificate: X509Certificate): string {
  return certificate.subject.replaceAll('\n', ', ');
}

function loadChecked(files: CertificateFiles, now: Date, warnings: string[]): LoadedCertificate {
  const name = parseDnsName(files.name, true);
  if (name === null) throw new CertificateProblem('invalid_name', `${JSON.stringify(files.name)} is not a valid host name`);

  const certFile = readPemFile('cert_file', files.certFile);
  const keyFile = readPemFile('key_file', files.keyFile);
  const chainFile = files.chainFile === undefined ? null : readPemFile('chain_file', files.chainFile);

  // Keys must be root-only (0600): the master reads them before dropping privileges.
  const keyMode = keyFile.stats.mode & 0o777;
  if ((keyMode & 0o077) !== 0) {
    warnings.push(
      `key_file ${files.keyFile} is accessible by group or others (mode ${keyMode.toString(8).padStart(4, '0')}); make it 0600`,
    );
  }
  const uid = process.getuid?.();
  if (uid !== undefined && keyFile.stats.uid !== 0 && keyFile.stats.uid !== uid) {
    warnings.push(`key_file ${files.keyFile} is owned by uid ${keyFile.stats.uid}, who can replace the key; make root its owner`);
  }
  if (PEM_PRIVATE_KEY.test(certFile.text.toString('latin1'))) {
    warnings.push(`cert_file ${files.certFile} also contains a private key; keep the key only in key_file`);
  }

  const [leaf, ...bundled] = parseCertificates('cert_file', files.certFile, certFile.text);
  if (leaf === undefined) throw new CertificateProblem('bad_certificate', `cert_file ${files.certFile} does not contain a certificate`);
  const key = parsePrivateKey(files.keyFile, keyFile.text);
  if (!leaf.checkPrivateKey(key)) {
    throw new CertificateProblem('key_mismatch', 'key_file does not match cert_file');
  }

  const notBefore = leaf.validFromDate;
  const notAfter = leaf.validToDate;
  if (now.getTime() > notAfter.getTime()) {
    throw new CertificateProblem('expired', `certificate expired on ${notAfter.toISOString()}`);
  }
  if (now.getTime() < notBefore.getTime()) {
    throw new CertificateProblem('not_yet_valid', `certificate is not valid before ${notBefore.toISOString()}`);
  }
  const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
  if (daysLeft < EXPIRY_WARNING_DAYS) {
    warnings.push(`certificate for ${name} expires on ${notAfter.toISOString()} (in ${daysLeft} days)`);
  }

  // Intermediates: any after the leaf in cert_file (a "fullchain" file), then chain_file.
  const chain = [...bundled];
  if (chainFile !== null && files.chainFile !== undefined) {
    const fromChainFile = parseCertificates('chain_file', files.chainFile, chainFile.text);
    if (fromChainFile.length === 0) {
      throw new CertificateProblem('bad_chain', `chain_file ${files.chainFile} does not contain a certificate`);
    }
    chain.push(...fromChainFile);
  }
  // Servers send the chain in the order given (RFC 8446 §4.4.2 wants each
  // certificate to certify the one before it); check names and signatures.
  for (let i = 0; i < chain.length; i++) {
    const issuer = chain[i] as X509Certificate;
    const issued = i === 0 ? leaf : (chain[i - 1] as X509Certificate);
    if (!issued.checkIssued(issuer) || !issued.verify(issuer.publicKey)) {
      const position = i < bundled.length ? `certificate ${i + 2} of cert_file` : `certificate ${i - bundled.length + 1} of chain_file`;
      const what = i === 0 ? 'the leaf certificate' : 'the certificate before it';
      throw new CertificateProblem(
        'chain_mismatch',
        `${position} (${subjectOf(issuer)}) did not issue ${what} (issuer ${issued.issuer.replaceAll('\n', ', ')})`,
      );
    }
    // Not fatal: a chain may deliberately carry an expired cross-sign
    // (Let's Encrypt's DST Root CA X3 one did until 2024).
    if (now.getTime() > issuer.validToDate.getTime()) {
      warnings.push(`chain certificate ${subjectOf(issuer)} expired on ${issuer.validToDate.toISOString()}`);
    }
  }

  const { names: subjectNames, fromCommonName } = certificateNames(leaf);
  if (fromCommonName) {
    warnings.push(`certificate for ${name} has no DNS subjectAltName; browsers ignore the CN (RFC 6125 §6.4.4)`);
  }
  const covered = subjectNames.some((certName) => {
    const pattern = parseDnsName(certName, true);
    return pattern !== null && dnsNameCovers(pattern, name);
  });
  if (!covered) {
    throw new CertificateProblem(
      'name_not_covered',
      `certificate names (${subjectNames.join(', ') || 'none'}) do not cover ${JSON.stringify(name)}`,
    );
  }

  return {
    name: files.name,
    certPem: leaf.toString(),
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    chainPem: chain.length === 0 ? null : chain.map((certificate) => certificate.toString()).join(''),
    subjectNames,
    issuer: leaf.issuer,
    notBefore,
    notAfter,
    fingerprint256: leaf.fingerprint256,
  };
}

/**
 * Reads and checks one manual certificate, synchronously (the master does this
 * at start, on reload and in `check`, before any worker is involved).
 *
 * Checks, in order: the name is a valid host name; each file is a readable
 * regular file under 1 MiB; cert_file holds a certificate (PEM, possibly
 * followed by intermediates, or DER); key_file holds an unencrypted private
 * key (RSA at least 2048 bits); the key matches the certificate; the
 * certificate is valid at `now`; each chain certificate issued and signed
 * the one before it; the certificate's names cover `files.name` (exact, or a
 * one-label wildcard).
 *
 * Warnings: key_file accessible by group/others or owned by another user,
 * a private key inside cert_file, expiry within EXPIRY_WARNING_DAYS, an
 * expired chain certificate, a certificate with no DNS SAN.
 */
export function loadCertificate(files: CertificateFiles, now: Date = new Date()): CertificateLoadResult {
  const warnings: string[] = [];
  try {
    return { ok: true, certificate: loadChecked(files, now, warnings), warnings };
  } catch (error) {
    if (error instanceof CertificateProblem) return { ok: false, code: error.code, problem: error.message, warnings };
    // Anything else is a bug here, not a bad file; its message is not shown, as it could quote input.
    return { ok: false, code: 'bad_certificate', problem: `cannot check the certificate for ${JSON.stringify(files.name)}`, warnings };
  }
}
