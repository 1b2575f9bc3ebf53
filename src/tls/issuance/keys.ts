/**
 * What both issuers do on this side of the wire: make the certificate's key
 * and CSR locally (the key never leaves the master), and check what the CA
 * sent back before anyone serves it.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { crypto as acmeCrypto } from 'acme-client';
import { IssuanceError, type CertificateKeyType, type IssuedCertificate } from './types.js';

export interface KeyAndCsr {
  readonly keyPem: string;
  readonly csrPem: string;
}

/**
 * RFC 5280 §4.1.2.6 / ub-common-name: a commonName holds at most 64
 * characters. A longer first name still goes in the subjectAltNames, which
 * is what clients check; the CSR then has no commonName (RFC 8555 §7.4
 * lets the CA take the names from the extension).
 */
const COMMON_NAME_MAX_CHARS = 64;

export async function createKeyAndCsr(names: readonly string[], keyType: CertificateKeyType): Promise<KeyAndCsr> {
  const key = keyType === 'rsa-2048' ? await acmeCrypto.createPrivateRsaKey(2048) : await acmeCrypto.createPrivateEcdsaKey('P-256');
  const subject = names[0];
  const commonName = subject !== undefined && subject.length <= COMMON_NAME_MAX_CHARS ? subject : undefined;
  const [, csr] = await acmeCrypto.createCsr({ altNames: [...names], ...(commonName === undefined ? {} : { commonName }) }, key);
  return { keyPem: key.toString('utf8'), csrPem: csr.toString('utf8') };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM bundle, in order, each with its trailing newline. */
export function splitPemCertificates(pem: string): string[] {
  return [...pem.matchAll(PEM_CERTIFICATE)].map((match) => `${match[0]}\n`);
}

/** The DNS names of a certificate's subjectAltName, lower case. */
export function dnsNamesOf(certificate: X509Certificate): string[] {
  const field = certificate.subjectAltName;
  if (field === undefined) return [];
  return field
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice('DNS:'.length).toLowerCase());
}

/**
 * The issued certificate as the master stores it, after checking that the
 * leaf carries our key (a CA that mixed up two orders must not get a key
 * swapped in) and every name asked for. `what` names the CA in errors.
 */
export function issuedCertificate(what: string, names: readonly string[], bundlePem: string, keyPem: string): IssuedCertificate {
  const [certPem, ...chain] = splitPemCertificates(bundlePem);
  const subject = names[0] ?? '';
  if (certPem === undefined) throw new IssuanceError(`${subject}: ${what} sent no certificate`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (error) {
    throw new IssuanceError(`${subject}: ${what} sent a certificate that does not parse: ${(error as Error).message}`);
  }
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
    throw new IssuanceError(`${subject}: ${what} sent a certificate for another key`);
  }
  const covered = new Set(dnsNamesOf(leaf));
  const missing = names.filter((name) => !covered.has(name.toLowerCase()));
  if (missing.length > 0) throw new IssuanceError(`${subject}: ${what} sent a certificate without ${missing.join(', ')}`);
  return {
    certPem,
    chainPem: chain.length > 0 ? chain.join('') : null,
    keyPem,
    notBefore: leaf.validFromDate,
    notAfter: leaf.validToDate,
  };
}
