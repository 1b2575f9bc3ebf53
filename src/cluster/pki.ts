/**
 * The cluster's own certificate authority (`miwidothttp cluster init`): one
 * CA per cluster, and one certificate per node signed by it. The node
 * certificate is both the node's TLS identity towards etcd (mTLS, client and
 * server use: a managed etcd member serves with it too) and its identity in
 * the cluster: its commonName is the node name.
 *
 * Keys are ECDSA P-256 (what etcd's and Go's TLS stacks handle best). The
 * certificates are made with @peculiar/x509 on WebCrypto, so no openssl
 * program is needed on a node.
 */
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { NODE_NAME } from './node-identity.js';

x509.cryptoProvider.set(webcrypto as never);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** The CA outlives many node certificates; nodes are re-issued with `cluster cert`. */
export const CA_VALIDITY_DAYS = 3650;
export const NODE_VALIDITY_DAYS = 825;

export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

const serial = (): string => `01${randomBytes(15).toString('hex')}`;

/** A new self-signed cluster CA named `clusterName`. */
export async function createClusterCa(clusterName: string, now = new Date()): Promise<PemPair> {
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${clusterName.replace(/[,=+<>#;"\\]/g, '_')} cluster CA`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    keys: keys as never,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  });
  return { certPem: certificate.toString('pem'), keyPem: await pkcs8Pem(keys.privateKey) };
}

/**
 * A node certificate signed by `ca`: commonName `name`, subjectAltNames the
 * name and `addresses` (IPs or host names a managed etcd member is reached
 * at), for TLS server and client use.
 */
export async function issueNodeCertificate(ca: PemPair, name: string, addresses: readonly string[], now = new Date()): Promise<PemPair> {
  if (!NODE_NAME.test(name)) throw new Error(`${JSON.stringify(name)} is not a node name (lower-case letters, digits, "." and "-")`);
  const caCertificate = new x509.X509Certificate(ca.certPem);
  const signingKey = await createPrivateKey(ca.keyPem).toCryptoKey(ALGORITHM, false, ['sign']);
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const names: x509.JsonGeneralName[] = [{ type: 'dns', value: name }];
  for (const address of addresses) names.push({ type: isIP(address) === 0 ? 'dns' : 'ip', value: address });
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${name}`,
    issuer: caCertificate.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(Math.min(now.getTime() + NODE_VALIDITY_DAYS * DAY_MS, caCertificate.notAfter.getTime())),
    publicKey: keys.publicKey as never,
    signingKey: signingKey as never,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(caCertificate.publicKey),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  });
  return { certPem: certificate.toString('pem'), keyPem: await pkcs8Pem(keys.privateKey) };
}
