/**
 * Bans cluster-wide. A ban made on any node (limit breaches, the IDS,
 * `ban add`) is written as `bans/IP` under a lease of the ban's length, so
 * etcd forgets it when it runs out; every node watches `bans/` and applies
 * what the others wrote. A ban lifted by an admin is deleted, and every
 * node lifts it.
 *
 * Whitelists stay local: each node skips addresses of its own
 * security.ddos.whitelist (AbuseControl.applySharedBan). Rate and
 * connection limits stay per node on purpose: a limit shared through etcd
 * would put a consensus round trip on the accept path of every connection,
 * and a client spread over N nodes by DNS or a balancer is what those
 * nodes are for. A client that breaches a node's limits enough is banned,
 * and that ban is shared.
 *
 * A read-only node (no quorum) still bans on its own, since a defence must
 * not stop, but cannot share: those bans hold on that node only, and say so
 * in the log.
 */
import type { Namespace, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { Ban, BanSource } from '../master/abuse/bans.js';
import type { BanReplica } from '../master/abuse/index.js';
import { etcdProblem, KEYS } from './etcd.js';
import { open, seal, type ClusterKeys } from './secrets.js';

/** What applies bans on this node (AbuseControl). */
export interface BanTarget {
  applySharedBan(ip: string, until: number, source: BanSource, reason: string): void;
  liftSharedBan(ip: string): void;
}

interface StoredBan {
  readonly ip: string;
  readonly until: number;
  readonly source: BanSource;
  readonly reason: string;
  readonly node: string;
}

/** A lifted ban's key disappears; one that disappears this close to its end simply expired. */
const EXPIRY_SLACK_MS = 2_000;

function parseBan(text: string): StoredBan | null {
  try {
    const value = JSON.parse(text) as Partial<StoredBan>;
    if (typeof value.ip !== 'string' || value.ip.length > 64 || typeof value.until !== 'number' || !Number.isFinite(value.until))
      return null;
    if (value.source !== 'limits' && value.source !== 'ids' && value.source !== 'admin') return null;
    return {
      ip: value.ip,
      until: value.until,
      source: value.source,
      reason: typeof value.reason === 'string' ? value.reason.slice(0, 200) : '',
      node: typeof value.node === 'string' ? value.node.slice(0, 64) : '?',
    };
  } catch {
    return null;
  }
}

export class ClusterBans implements BanReplica {
  #target: BanTarget | null = null;
  #watcher: Watcher | null = null;
  /** Until when each ban seen in etcd runs (to tell an expiry from a lift). */
  readonly #known = new Map<string, number>();
  /** The etcd write of each ban made here, for an admin's `ban add` to wait on. */
  readonly #writes = new Map<string, Promise<string | null>>();

  constructor(
    private readonly keys: Namespace,
    /** Bans are sealed too: not secret, but only a holder of cluster_token may ban (a stolen node certificate alone may not). */
    private readonly secrets: ClusterKeys,
    private readonly prefix: string,
    private readonly nodeName: string,
    private readonly log: Logger,
    /** Why writes are refused now (read-only), or null. */
    private readonly writeRefusal: () => string | null,
  ) {}

  attach(target: BanTarget): void {
    this.#target = target;
  }

  banned(ban: Ban): void {
    const refused = this.writeRefusal();
    if (refused !== null) {
      this.log.warn({ clientIp: ban.ip, why: refused }, 'ban applies on this node only: the cluster is read-only');
      this.#writes.set(ban.ip, Promise.resolve(`banned on this node only: ${refused}`));
      return;
    }
    const seconds = Math.max(1, Math.ceil((ban.until - Date.now()) / 1000));
    const stored: StoredBan = { ip: ban.ip, until: ban.until, source: ban.source, reason: ban.reason, node: this.nodeName };
    this.#known.set(ban.ip, ban.until);
    const write = (async () => {
      const lease = this.keys.lease(seconds, { autoKeepAlive: false });
      try {
        await lease.put(KEYS.ban(ban.ip)).value(seal(this.secrets, this.prefix + KEYS.ban(ban.ip), JSON.stringify(stored)));
        return null;
      } catch (error) {
        this.log.error({ clientIp: ban.ip, problem: etcdProblem(error) }, 'cannot share a ban with the cluster; it holds on this node');
        return `banned on this node only: the cluster did not take it: ${etcdProblem(error)}`;
      } finally {
        lease.release();
      }
    })();
    this.#writes.set(ban.ip, write);
    void write.finally(() => {
      if (this.#writes.get(ban.ip) === write) this.#writes.delete(ban.ip);
    });
  }

  lifted(ip: string): void {
    this.#known.delete(ip);
    const write = this.keys
      .delete()
      .key(KEYS.ban(ip))
      .exec()
      .then(
        () => null,
        (error: unknown) => `lifted on this node only: ${etcdProblem(error)}`,
      );
    this.#writes.set(ip, write);
  }

  /** Resolves when the last etcd write for `ip` is done: null, or why it did not reach the cluster. */
  async settled(ip: string): Promise<string | null> {
    return (await this.#writes.get(ip)) ?? null;
  }

  /** Applies every ban in etcd (start, rejoin), then follows changes from that revision on. */
  async sync(): Promise<void> {
    const answer = await this.keys.getAll().prefix(KEYS.bans).exec();
    for (const kv of answer.kvs) this.#apply(kv.key.toString('utf8'), kv.value.toString('utf8'));
    await this.#watchFrom(String(BigInt(answer.header.revision) + 1n));
  }

  async #watchFrom(revision: string): Promise<void> {
    await this.#watcher?.cancel().catch(() => undefined);
    const watcher = await this.keys.watch().prefix(KEYS.bans).startRevision(revision).create();
    watcher.on('put', (kv) => this.#apply(kv.key.toString('utf8'), kv.value.toString('utf8')));
    watcher.on('delete', (kv) => this.#lift(kv.key.toString('utf8').slice(KEYS.bans.length)));
    watcher.on('error', (error) => this.log.warn({ problem: etcdProblem(error) }, 'ban watch failed; it reconnects'));
    this.#watcher = watcher;
  }

  #apply(key: string, sealed: string): void {
    let ban: StoredBan | null = null;
    try {
      ban = parseBan(open(this.secrets, this.prefix + key, sealed).toString('utf8'));
    } catch {
      ban = null;
    }
    if (ban === null || KEYS.ban(ban.ip) !== key) {
      this.log.warn({ key }, 'ignored a ban in etcd that is not sealed with this cluster_token, or malformed');
      return;
    }
    this.#known.set(ban.ip, ban.until);
    // Our own bans come back too: applySharedBan keeps the longer one, so a node that lost its state file gets them back.
    this.#target?.applySharedBan(ban.ip, ban.until, ban.source, `${ban.reason} (banned on ${ban.node})`);
  }

  #lift(ip: string): void {
    const until = this.#known.get(ip);
    this.#known.delete(ip);
    // An expiry is each node's own timer's business; only a lift before the end is news.
    if (until !== undefined && until - Date.now() > EXPIRY_SLACK_MS) this.#target?.liftSharedBan(ip);
  }

  async close(): Promise<void> {
    await this.#watcher?.cancel().catch(() => undefined);
  }
}
