/**
 * ACME challenge answers for the whole cluster: the CA may reach any node
 * (DNS or a balancer picks it), so every node serves every answer.
 *
 * - The ordering node's issuer writes to a ClusterChallengeBoard: publish()
 *   writes its answers (sealed: a TLS-ALPN-01 answer carries a key) under
 *   `acme/challenges/` in one transaction, under its lease, and resolves
 *   once every live node confirmed that revision.
 * - Every node runs a ChallengeMirror: it follows `acme/challenges/`, puts
 *   the answers on its own workers' board, waits until they serve them,
 *   and writes the revision it serves to `acme/acks/NODE`.
 */
import { createHash } from 'node:crypto';
import type { Lease, Namespace, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { IssuanceError, type ChallengeBoard } from '../tls/issuance/types.js';
import { etcdProblem, KEYS } from './etcd.js';
import { open, seal, type ClusterKeys } from './secrets.js';

/** How long the nodes get to confirm a new set of answers. */
const CONFIRM_TIMEOUT_MS = 15_000;
const POLL_MS = 100;

type Answer =
  | { type: 'http-01'; token: string; keyAuthorization: string }
  | { type: 'tls-alpn-01'; name: string; certPem: string; keyPem: string };

const idOf = (answer: Answer): string =>
  createHash('sha256')
    .update(answer.type === 'http-01' ? `http-01\0${answer.token}` : `tls-alpn-01\0${answer.name}`)
    .digest('base64url');

/** What the cluster needs of the node: its keys, its lease, the live nodes. */
export interface ChallengeContext {
  readonly keys: Namespace;
  readonly secrets: ClusterKeys;
  readonly prefix: string;
  readonly nodeName: string;
  lease(): Lease;
  liveNodes(): Promise<string[]>;
}

export class ClusterChallengeBoard implements ChallengeBoard {
  /** This node's answers: what the next publish() makes the cluster's. */
  readonly #wanted = new Map<string, Answer>();
  /** What the last publish() wrote. */
  readonly #written = new Set<string>();

  constructor(private readonly context: ChallengeContext) {}

  setHttp01(token: string, keyAuthorization: string): void {
    const answer: Answer = { type: 'http-01', token, keyAuthorization };
    this.#wanted.set(idOf(answer), answer);
  }

  clearHttp01(token: string): void {
    this.#wanted.delete(idOf({ type: 'http-01', token, keyAuthorization: '' }));
  }

  setTlsAlpn01(name: string, certPem: string, keyPem: string): void {
    const answer: Answer = { type: 'tls-alpn-01', name, certPem, keyPem };
    this.#wanted.set(idOf(answer), answer);
  }

  clearTlsAlpn01(name: string): void {
    this.#wanted.delete(idOf({ type: 'tls-alpn-01', name, certPem: '', keyPem: '' }));
  }

  async publish(): Promise<void> {
    const { keys, secrets, prefix } = this.context;
    const lease = this.context.lease();
    const txn = keys.if(KEYS.verifier, 'Create', '>', 0);
    const operations = [];
    for (const [id, answer] of this.#wanted) {
      const key = KEYS.acmeChallenge(id);
      operations.push(lease.put(key).value(seal(secrets, prefix + key, JSON.stringify(answer))));
    }
    for (const id of this.#written) if (!this.#wanted.has(id)) operations.push(keys.delete().key(KEYS.acmeChallenge(id)));
    let revision: string;
    try {
      const result = await txn.then(...operations).commit();
      revision = result.header.revision;
    } catch (error) {
      throw new IssuanceError(`publishing the challenge answers to the cluster: ${etcdProblem(error)}`);
    }
    this.#written.clear();
    for (const id of this.#wanted.keys()) this.#written.add(id);
    await this.#confirmed(revision);
  }

  /** Every live node's workers serve `revision` (or a later one). */
  async #confirmed(revision: string): Promise<void> {
    const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
    let waitingFor: string[] = [];
    while (Date.now() < deadline) {
      try {
        const live = await this.context.liveNodes();
        const acks = await this.context.keys.getAll().prefix(KEYS.acmeAcks).strings();
        waitingFor = live.filter((node) => {
          const ack = parseAck(acks[KEYS.acmeAck(node)]);
          return ack === null || !ack.answering || BigInt(ack.revision) < BigInt(revision);
        });
        if (waitingFor.length === 0) return;
      } catch {
        // etcd busy; ask again
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    throw new IssuanceError(
      `the cluster's nodes ${waitingFor.join(', ')} did not confirm they serve the challenge answers (a node whose configuration has no provider = "acme" does not answer)`,
    );
  }
}

/** What acme/acks/NODE holds: the revision of answers the node's workers serve, and whether they answer challenges at all. */
interface Ack {
  readonly revision: string;
  readonly answering: boolean;
}

function parseAck(text: string | undefined): Ack | null {
  if (text === undefined) return null;
  try {
    const value = JSON.parse(text) as Partial<Ack>;
    return typeof value.revision === 'string' && /^\d+$/.test(value.revision) && typeof value.answering === 'boolean'
      ? (value as Ack)
      : null;
  } catch {
    return null;
  }
}

/** Puts every answer the cluster publishes on this node's workers' board, and confirms. */
export class ChallengeMirror {
  readonly #answers = new Map<string, Answer>();
  #watcher: Watcher | null = null;
  #latest = '0';
  #running: Promise<void> | null = null;
  #again = false;

  constructor(
    private readonly context: ChallengeContext,
    /** This node's workers' board (the supervisor's). */
    private readonly local: ChallengeBoard,
    /** Whether the serving generation answers ACME challenges (its [ssl] provider is "acme"). */
    private readonly answering: () => boolean,
    private readonly log: Logger,
  ) {}

  /** The serving generation changed (a reload): confirm again what it serves. */
  refresh(): void {
    if (this.#watcher !== null) this.#apply();
  }

  async sync(): Promise<void> {
    const { keys } = this.context;
    const answer = await keys.getAll().prefix(KEYS.acmeChallenges).exec();
    this.#answers.clear();
    for (const kv of answer.kvs) this.#take(kv.key.toString('utf8'), kv.value.toString('utf8'));
    this.#latest = answer.header.revision;
    await this.#watcher?.cancel().catch(() => undefined);
    const watcher = await keys
      .watch()
      .prefix(KEYS.acmeChallenges)
      .startRevision(String(BigInt(answer.header.revision) + 1n))
      .create();
    watcher.on('data', (response) => {
      for (const event of response.events) {
        const key = event.kv.key.toString('utf8');
        if (event.type === 'Put') this.#take(key, event.kv.value.toString('utf8'));
        else this.#answers.delete(key);
      }
      this.#latest = response.header.revision;
      this.#apply();
    });
    watcher.on('error', (error) => this.log.warn({ problem: etcdProblem(error) }, 'challenge watch failed; it reconnects'));
    this.#watcher = watcher;
    this.#apply();
  }

  #take(key: string, sealed: string): void {
    try {
      this.#answers.set(key, JSON.parse(open(this.context.secrets, this.context.prefix + key, sealed).toString('utf8')) as Answer);
    } catch (error) {
      this.log.warn({ key, problem: (error as Error).message }, 'ignored a challenge answer that does not open');
    }
  }

  /** One apply at a time; changes during one are applied by the next. */
  #apply(): void {
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    this.#running = this.#applyOnce().finally(() => {
      this.#running = null;
      if (this.#again) {
        this.#again = false;
        this.#apply();
      }
    });
  }

  readonly #onBoard = new Map<string, Answer>();

  async #applyOnce(): Promise<void> {
    const revision = this.#latest;
    for (const [key, answer] of this.#onBoard) {
      if (this.#answers.has(key)) continue;
      if (answer.type === 'http-01') this.local.clearHttp01(answer.token);
      else this.local.clearTlsAlpn01(answer.name);
      this.#onBoard.delete(key);
    }
    for (const [key, answer] of this.#answers) {
      if (answer.type === 'http-01') this.local.setHttp01(answer.token, answer.keyAuthorization);
      else this.local.setTlsAlpn01(answer.name, answer.certPem, answer.keyPem);
      this.#onBoard.set(key, answer);
    }
    try {
      await this.local.publish();
      const ack: Ack = { revision, answering: this.answering() };
      await this.context.lease().put(KEYS.acmeAck(this.context.nodeName)).value(JSON.stringify(ack));
    } catch (error) {
      this.log.warn({ problem: etcdProblem(error) }, 'could not confirm the challenge answers to the cluster');
    }
  }

  async close(): Promise<void> {
    await this.#watcher?.cancel().catch(() => undefined);
  }
}
