/**
 * What makes a certificate a node certificate of the cluster (pki.ts makes
 * them): checked with node:crypto alone, so loading a config with a
 * [cluster] table does not load @peculiar/x509 (~18 MB of resident memory).
 */
import type { X509Certificate } from 'node:crypto';

/** A node name: what the certificate's commonName and the etcd keys carry. */
export const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;

/** The commonName of a certificate's subject, or null. */
export function commonNameOf(certificate: X509Certificate): string | null {
  const match = /^CN=(.*)$/m.exec(certificate.subject);
  return match?.[1]?.trim() ?? null;
}

/**
 * Why `certificate` is not a node certificate of the cluster whose CA is
 * `ca` for node `name`, or null when it is: signed by the CA, valid now,
 * and named `name`.
 */
export function nodeIdentityProblem(certificate: X509Certificate, ca: X509Certificate, name: string, now = new Date()): string | null {
  if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey)) return 'the certificate is not signed by the cluster CA';
  if (now < certificate.validFromDate) return `the certificate is not valid before ${certificate.validFromDate.toISOString()}`;
  if (now > certificate.validToDate) return `the certificate expired on ${certificate.validToDate.toISOString()}`;
  const commonName = commonNameOf(certificate);
  if (commonName !== name) return `the certificate is for ${JSON.stringify(commonName)}, not for node ${JSON.stringify(name)}`;
  return null;
}
