/**
 * Who belongs to the cluster, and how a node gets in.
 *
 * - The admitted nodes are one etcd key (`membership`), changed only by a
 *   transaction that compares its revision: "count < max_nodes, then add"
 *   is one atomic step, whoever races.
 * - A live node holds `nodes/NAME` under its lease (alive = lease held).
 * - Identity: the node certificate is the cluster CA's and names the node
 *   (etcd's mTLS already refused any other CA's); the join request also
 *   carries an HMAC over the node name and the certificate's fingerprint
 *   keyed from cluster_token (the token never travels), and a signature
 *   with the certificate's key over the same bytes (whoever sends it holds
 *   the key, not a copied certificate).
 * - A live member answers each join request (`verdicts/NAME/NONCE`) and
 *   audits a refusal. With allow_auto_join = false a node that is not yet
 *   admitted waits for `miwidothttp cluster admit NAME` on a member.
 */
import { createHash, createPrivateKey, randomBytes, sign, verify, X509Certificate } from 'node:crypto';
import type { Namespace } from 'etcd3';
import { nodeIdentityProblem } from './node-identity.js';
import { joinProof, sameSecret, type ClusterKeys } from './secrets.js';
import { KEYS } from './etcd.js';

export interface MemberRecord {
  readonly fingerprint: string;
  readonly admittedAt: string;
  readonly admittedBy: string;
}

export interface Membership {
  readonly members: Readonly<Record<string, MemberRecord>>;
  /** The key's mod revision (0: no membership yet, the cluster is new). */
  readonly revision: string;
}

export async function readMembership(keys: Namespace): Promise<Membership> {
  const answer = await keys.get(KEYS.membership).exec();
  const kv = answer.kvs[0];
  if (kv === undefined) return { members: {}, revision: '0' };
  const parsed = JSON.parse(kv.value.toString('utf8')) as { members?: Record<string, MemberRecord> };
  return { members: parsed.members ?? {}, revision: kv.mod_revision };
}

export type Admission = { ok: true; already: boolean } | { ok: false; reason: string };

/**
 * Adds `name` to the admitted nodes unless that would pass `maxNodes`: a
 * compare-and-swap on the membership key's revision, retried while others
 * change it at the same time.
 */
export async function admit(keys: Namespace, name: string, fingerprint: string, by: string, maxNodes: number): Promise<Admission> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const current = await readMembership(keys);
    const known = current.members[name];
    if (known !== undefined && (fingerprint === '' || known.fingerprint === fingerprint)) return { ok: true, already: true };
    const names = Object.keys(current.members);
    if (known === undefined && names.length >= maxNodes)
      return {
        ok: false,
        reason: `the cluster is full: max_nodes = ${maxNodes} (${names.sort().join(', ')}); \`miwidothttp cluster remove NAME\` frees a place`,
      };
    const members = {
      ...current.members,
      [name]: { fingerprint: fingerprint || (known?.fingerprint ?? ''), admittedAt: new Date().toISOString(), admittedBy: by },
    };
    const body = JSON.stringify({ members });
    const txn = keys.if(KEYS.membership, 'Mod', '==', current.revision).then(keys.put(KEYS.membership).value(body));
    if ((await txn.commit()).succeeded) return { ok: true, already: false };
  }
  return { ok: false, reason: 'the membership kept changing under us; try again' };
}

/** Removes `name` from the admitted nodes (and frees its place); false when it was not admitted. */
export async function removeMember(keys: Namespace, name: string): Promise<boolean> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const current = await readMembership(keys);
    if (current.members[name] === undefined) return false;
    const members = { ...current.members };
    delete members[name];
    const txn = keys.if(KEYS.membership, 'Mod', '==', current.revision).then(keys.put(KEYS.membership).value(JSON.stringify({ members })));
    if ((await txn.commit()).succeeded) return true;
  }
  throw new Error('the membership kept changing under us; try again');
}

/** What a joining node publishes under `joins/NAME`. */
export interface JoinRequest {
  readonly name: string;
  /** The node certificate, DER in base64 (no PEM is stored in etcd). */
  readonly certificate: string;
  readonly nonce: string;
  readonly proof: string;
  readonly signature: string;
}

export interface Verdict {
  readonly ok: boolean;
  /** Not admitted yet: waiting for `cluster admit`. */
  readonly pending?: boolean;
  readonly reason: string;
  readonly by: string;
}

const signedBytes = (name: string, fingerprint: string, nonce: string): Buffer => Buffer.from(`join\0${name}\0${fingerprint}\0${nonce}`);

export function fingerprintOf(certificate: X509Certificate): string {
  return createHash('sha256').update(certificate.raw).digest('base64url');
}

export function makeJoinRequest(name: string, certPem: string, keyPem: string, keys: ClusterKeys): JoinRequest {
  const certificate = new X509Certificate(certPem);
  const fingerprint = fingerprintOf(certificate);
  const nonce = randomBytes(16).toString('base64url');
  return {
    name,
    certificate: certificate.raw.toString('base64'),
    nonce,
    proof: joinProof(keys, name, fingerprint, nonce),
    signature: sign('sha256', signedBytes(name, fingerprint, nonce), createPrivateKey(keyPem)).toString('base64'),
  };
}

/** Why a join request is not from node `name` of this cluster, or null with its certificate's fingerprint. */
export function checkJoinRequest(
  request: JoinRequest,
  name: string,
  ca: X509Certificate,
  keys: ClusterKeys,
): { ok: true; fingerprint: string } | { ok: false; reason: string } {
  if (request.name !== name) return { ok: false, reason: `the request under joins/${name} is for ${JSON.stringify(request.name)}` };
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(Buffer.from(request.certificate, 'base64'));
  } catch {
    return { ok: false, reason: 'the certificate does not parse' };
  }
  const identity = nodeIdentityProblem(certificate, ca, name);
  if (identity !== null) return { ok: false, reason: identity };
  const fingerprint = fingerprintOf(certificate);
  let signed = false;
  try {
    signed = verify(
      'sha256',
      signedBytes(name, fingerprint, request.nonce),
      certificate.publicKey,
      Buffer.from(request.signature, 'base64'),
    );
  } catch {
    signed = false;
  }
  if (!signed) return { ok: false, reason: "the request is not signed with the certificate's key" };
  if (!sameSecret(request.proof, joinProof(keys, name, fingerprint, request.nonce)))
    return { ok: false, reason: 'the proof of cluster_token does not match: this node has another token' };
  return { ok: true, fingerprint };
}

/** Parses a stored join request, or null when it is not one (a member never trusts etcd's bytes). */
export function parseJoinRequest(text: string): JoinRequest | null {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const fields = ['name', 'certificate', 'nonce', 'proof', 'signature'] as const;
    if (!fields.every((field) => typeof value[field] === 'string' && (value[field] as string).length <= 8192)) return null;
    return value as unknown as JoinRequest;
  } catch {
    return null;
  }
}
