/**
 * The node's etcd client: mTLS with the node certificate, a deadline on
 * every call, and fault handling tuned for a health loop that must see a
 * lost quorum in about a second (etcd3's defaults keep a failed host out
 * for 5 s and back watches off for up to 30 s).
 *
 * Every key of the cluster lives under `[cluster] key_prefix`; the rest of
 * src/cluster/ works on the namespace and names keys relative to it (see
 * KEYS below).
 */
import { readFileSync } from 'node:fs';
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import { Etcd3, isRecoverableError, type Namespace } from 'etcd3';
import type { ClusterSpec } from '../config/types.js';

/** Longest any single unary call may take (a put, a transaction); the health read has its own, shorter one. */
export const CALL_TIMEOUT_MS = 5_000;
/** A host that failed twice in a row is skipped for this long, then tried again. */
const HOST_RETRY_AFTER_MS = 1_000;
const DIAL_TIMEOUT_MS = 3_000;

/** The keys of the cluster, relative to key_prefix. */
export const KEYS = {
  /** HMAC of a key derived from cluster_token: a node checks it holds the cluster's token without the token ever being stored. */
  verifier: 'verifier',
  /** The admitted nodes (JSON), changed only by a compare-and-swap on its revision: max_nodes is enforced there. */
  membership: 'membership',
  /** nodes/NAME: a live node, under its lease. */
  node: (name: string) => `nodes/${name}`,
  nodes: 'nodes/',
  /** joins/NAME: a join request, under the joiner's lease. */
  join: (name: string) => `joins/${name}`,
  joins: 'joins/',
  /** verdicts/NAME/NONCE: a member's answer to one join request. */
  verdict: (name: string, nonce: string) => `verdicts/${name}/${nonce}`,
  /** The shared configuration (sealed); its mod revision is the configuration's revision. */
  sharedConfig: 'config/shared',
  /** config/results/NAME: what NAME did with the last revision it saw. */
  configResult: (name: string) => `config/results/${name}`,
  configResults: 'config/results/',
  /** bans/IP: a ban under a lease of its duration. */
  ban: (ip: string) => `bans/${ip}`,
  bans: 'bans/',
  /** The session ticket key every node serves with (sealed). */
  ticketKey: 'tickets/key',
  acmeLock: (name: string) => `acme/locks/${name}`,
  /** acme/challenges/ID: an HTTP-01 or TLS-ALPN-01 answer (sealed), under the ordering node's lease. */
  acmeChallenge: (id: string) => `acme/challenges/${id}`,
  acmeChallenges: 'acme/challenges/',
  /** acme/acks/NAME: the challenge set (version) NAME's workers serve. */
  acmeAck: (name: string) => `acme/acks/${name}`,
  acmeAcks: 'acme/acks/',
  acmeAccount: (ca: string) => `acme/accounts/${ca}`,
  /** certs/AUTHORITY/NAME: an issued certificate and its key (sealed). */
  certificate: (authority: string, name: string) => `certs/${authority}/${name}`,
} as const;

export interface EtcdConnection {
  readonly client: Etcd3;
  /** The cluster's keys: everything under key_prefix. */
  readonly keys: Namespace;
  /** One client per endpoint, for member status (which members answer). */
  readonly perEndpoint: readonly { readonly endpoint: string; readonly client: Etcd3 }[];
  close(): void;
}

function clientFor(spec: ClusterSpec, hosts: readonly string[]): Etcd3 {
  const tls = hosts.some((host) => host.startsWith('https:'));
  return new Etcd3({
    hosts: [...hosts],
    ...(tls && {
      credentials: {
        rootCertificate: readFileSync(spec.caFile),
        certChain: readFileSync(spec.certFile),
        privateKey: readFileSync(spec.keyFile),
      },
    }),
    dialTimeout: DIAL_TIMEOUT_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    faultHandling: {
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: HOST_RETRY_AFTER_MS, breaker: new ConsecutiveBreaker(2) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 2 }),
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1_000 }).next(),
    },
  });
}

export function connectEtcd(spec: ClusterSpec): EtcdConnection {
  const client = clientFor(spec, spec.endpoints);
  const perEndpoint = spec.endpoints.map((endpoint) => ({ endpoint, client: clientFor(spec, [endpoint]) }));
  return {
    client,
    keys: client.namespace(spec.keyPrefix),
    perEndpoint,
    close() {
      client.close();
      for (const one of perEndpoint) one.client.close();
    },
  };
}

/** One line for an etcd client error: gRPC's text without its stack. */
export function etcdProblem(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s*[\r\n]+\s*/g, ' ').slice(0, 300);
}
