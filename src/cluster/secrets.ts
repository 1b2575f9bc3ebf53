/**
 * Everything the cluster derives from `cluster_token`, which itself never
 * leaves this master: not to etcd, not to a worker, not to a log.
 *
 *   root      scrypt(token) (RFC 7914; N = 2^15, r = 8, p = 1): an
 *             operator's weak token costs an attacker who reads etcd ~0.1 s
 *             per guess instead of a hash's nanoseconds;
 *   subkeys   HKDF-SHA256 (RFC 5869) of the root, one per purpose, so a
 *             key used for one thing never doubles as another's.
 *
 * Sealed values (ACME account key, certificate keys, ticket keys, TLS-ALPN
 * challenge keys) are AES-256-GCM with a fresh 96-bit nonce (NIST SP
 * 800-38D §8.2.2) and the etcd key they are stored under as additional
 * data, so a value copied to another key does not open.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';

const SCRYPT_SALT = 'miwidothttp cluster token v1';
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const SEALED_PREFIX = 'gcm1.';

export interface ClusterKeys {
  /** HMAC key of join proofs. */
  readonly proof: Buffer;
  /** AES-256-GCM key of secrets stored in etcd. */
  readonly seal: Buffer;
  /** What the cluster stores to let a node check it holds the same token (an HMAC, not the token). */
  readonly verifier: string;
  /** The session ID context secret every node shares (TLS resumption across nodes). */
  readonly ticketContext: Buffer;
}

export function deriveClusterKeys(token: string): ClusterKeys {
  const root = scryptSync(token, SCRYPT_SALT, 32, SCRYPT);
  const sub = (info: string): Buffer => Buffer.from(hkdfSync('sha256', root, Buffer.alloc(0), info, 32));
  const proof = sub('miwidothttp join proof');
  return {
    proof,
    seal: sub('miwidothttp sealed values'),
    verifier: createHmac('sha256', sub('miwidothttp token verifier')).update('verifier').digest('base64url'),
    ticketContext: sub('miwidothttp session ticket context'),
  };
}

/** The join proof: HMAC over the node name, its certificate's fingerprint and the join's nonce. */
export function joinProof(keys: ClusterKeys, name: string, fingerprint: string, nonce: string): string {
  return createHmac('sha256', keys.proof).update(`join\0${name}\0${fingerprint}\0${nonce}`).digest('base64url');
}

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `plaintext` sealed for storage under `etcdKey`. */
export function seal(keys: ClusterKeys, etcdKey: string, plaintext: string | Buffer): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keys.seal, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(etcdKey));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return `${SEALED_PREFIX}${Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64')}`;
}

/**
 * Opens what `seal` made for `etcdKey`.
 * @throws Error when it was sealed with another token, for another key, or altered.
 */
export function open(keys: ClusterKeys, etcdKey: string, sealed: string): Buffer {
  if (!sealed.startsWith(SEALED_PREFIX)) throw new Error(`${etcdKey}: not a sealed value`);
  const bytes = Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64');
  if (bytes.length < NONCE_BYTES + TAG_BYTES) throw new Error(`${etcdKey}: sealed value too short`);
  const decipher = createDecipheriv('aes-256-gcm', keys.seal, bytes.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(etcdKey));
  decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new Error(`${etcdKey}: does not open with this cluster_token (another cluster's, or altered)`);
  }
}
