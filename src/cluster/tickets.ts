/**
 * Session ticket keys shared by every node, so a client resumes its TLS
 * session on whichever node DNS or the balancer sends it to next.
 *
 * One key, sealed under `tickets/key` with the time it was made. Every node
 * watches it and hands it to its workers. When it is due (the same 12 hours
 * as a single node, src/tls/ticket-keys.ts), every node tries to replace it
 * with a transaction that compares the revision it saw: exactly one wins,
 * and all take the winner's key from the watch. The session ID context is
 * derived from cluster_token, the same on every node.
 */
import { randomBytes } from 'node:crypto';
import type { Namespace, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { TICKET_KEY_BYTES, TICKET_KEY_ROTATION_MS } from '../tls/ticket-keys.js';
import { etcdProblem, KEYS } from './etcd.js';
import { open, seal, type ClusterKeys } from './secrets.js';

/** What takes the key on this node (SessionTickets). */
export interface TicketTarget {
  install(key: Buffer, rotatedAtMs: number): void;
}

const MAX_TIMER_MS = 60 * 60 * 1000;

export class ClusterTickets {
  #watcher: Watcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #seenRevision = '0';
  #rotatedAt = 0;
  #closed = false;

  constructor(
    private readonly keys: Namespace,
    private readonly secrets: ClusterKeys,
    private readonly fullKey: string,
    private readonly target: TicketTarget,
    private readonly log: Logger,
    private readonly writable: () => boolean,
    private readonly rotationMs = TICKET_KEY_ROTATION_MS,
  ) {}

  /** Takes the cluster's key (making the first one, or a due one), then follows it. */
  async sync(): Promise<void> {
    const answer = await this.keys.get(KEYS.ticketKey).exec();
    const kv = answer.kvs[0];
    if (kv === undefined || !this.#take(kv.value.toString('utf8'), kv.mod_revision))
      await this.#rotate(kv === undefined ? '0' : kv.mod_revision);
    await this.#watcher?.cancel().catch(() => undefined);
    const watcher = await this.keys
      .watch()
      .key(KEYS.ticketKey)
      .startRevision(String(BigInt(answer.header.revision) + 1n))
      .create();
    watcher.on('put', (changed) => this.#take(changed.value.toString('utf8'), changed.mod_revision));
    watcher.on('error', (error) => this.log.warn({ problem: etcdProblem(error) }, 'ticket key watch failed; it reconnects'));
    this.#watcher = watcher;
  }

  /** Installs a stored key; false when it is unusable or due (the caller rotates). */
  #take(sealed: string, revision: string): boolean {
    let record: { key: string; rotatedAt: number };
    try {
      record = JSON.parse(open(this.secrets, this.fullKey, sealed).toString('utf8')) as typeof record;
    } catch (error) {
      this.log.error({ problem: (error as Error).message }, 'the cluster ticket key does not open; replacing it');
      return false;
    }
    const key = Buffer.from(record.key, 'base64');
    if (key.length !== TICKET_KEY_BYTES || !Number.isFinite(record.rotatedAt)) return false;
    if (BigInt(revision) < BigInt(this.#seenRevision)) return true;
    this.#seenRevision = revision;
    this.#rotatedAt = record.rotatedAt;
    this.target.install(key, record.rotatedAt);
    this.#arm();
    return Date.now() - record.rotatedAt < this.rotationMs;
  }

  async #rotate(seenRevision: string): Promise<void> {
    if (this.#closed || !this.writable()) return;
    const rotatedAt = Date.now();
    const body = seal(this.secrets, this.fullKey, JSON.stringify({ key: randomBytes(TICKET_KEY_BYTES).toString('base64'), rotatedAt }));
    try {
      const result = await this.keys.if(KEYS.ticketKey, 'Mod', '==', seenRevision).then(this.keys.put(KEYS.ticketKey).value(body)).commit();
      if (result.succeeded) this.log.info('session ticket key rotated for the cluster');
      // Lost the race: the winner's key arrives through the watch.
    } catch (error) {
      this.log.warn({ problem: etcdProblem(error) }, 'cannot rotate the cluster ticket key; the current one stays');
    }
  }

  #arm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#closed) return;
    // A little jitter: the nodes do not all ask at the same millisecond.
    const due = this.#rotatedAt + this.rotationMs + Math.random() * 2000 - Date.now();
    this.#timer = setTimeout(
      () => {
        if (Date.now() - this.#rotatedAt >= this.rotationMs) void this.#rotate(this.#seenRevision);
        else this.#arm();
      },
      Math.min(Math.max(0, due), MAX_TIMER_MS),
    );
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#watcher?.cancel().catch(() => undefined);
  }
}
