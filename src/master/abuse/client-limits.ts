/**
 * The server's limits per client, held by the master so that they hold for
 * the whole server whatever worker a connection lands on (keep-alive pins a
 * client to one worker, so per-worker counters with limit/N would be wrong):
 *
 * - connections: max_connections, max_connections_per_ip and
 *   connection_rate_per_ip (with its burst, connection_burst_per_ip). A worker asks before it reads a byte of a new
 *   connection and says when the connection closes; the master's counts
 *   are exact.
 * - requests ([security.rate_limiting]): a token bucket per client IP. Asking
 *   the master for every request would cost an IPC round trip each, so a
 *   worker takes a lease of a few tokens and spends them locally. The lease
 *   grows while a client keeps spending (up to a share of the burst) and the
 *   unspent rest comes back within a quarter second (see the worker's
 *   rate-limit stage), so tokens parked in one worker never starve another
 *   for long.
 *
 * Memory is bounded whatever the number of distinct addresses: every table
 * keyed by client is a least-recently-used map capped at
 * [security.ddos].max_tracked_clients; a bucket that has refilled says no more
 * than a fresh one and is dropped. Forgetting a client can only make its
 * limit looser for a moment, never lock anyone out. Open-connection counts
 * are never forgotten: max_connections bounds them.
 */
import type { AccessSpec, LimitsSpec, RateLimitSpec } from '../../config/types.js';

export type ConnectVerdict = 'ok' | 'max_connections' | 'max_connections_per_ip' | 'connection_rate';

export interface Grant {
  readonly granted: number;
  /** When granted is 0: how long until one token is there. */
  readonly retryAfterMs: number;
}

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
}

interface Breaches {
  count: number;
  windowStart: number;
}

/** A Map that forgets its least recently used entries past `capacity`. */
export class LruMap<V> {
  readonly #entries = new Map<string, V>();
  constructor(readonly capacity: number) {}

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): V | undefined {
    const value = this.#entries.get(key);
    if (value !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    while (this.#entries.size > this.capacity) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Drops every entry for which `stale` is true. */
  prune(stale: (value: V) => boolean): void {
    for (const [key, value] of this.#entries) if (stale(value)) this.#entries.delete(key);
  }
}

/** The most of the burst one lease may carry: what one worker can hold unspent. */
const LEASE_SHARE_OF_BURST = 1 / 8;

export interface LimitSettings {
  readonly limits: Pick<LimitsSpec, 'maxConnections' | 'maxConnectionsPerIp' | 'connectionRatePerIp' | 'connectionBurstPerIp'>;
  readonly rateLimit: RateLimitSpec | null;
  readonly access: Pick<AccessSpec, 'banAfterBreaches' | 'breachWindowMs' | 'maxTrackedClients'>;
}

export class ClientLimits {
  #settings: LimitSettings;
  #openTotal = 0;
  readonly #openByIp = new Map<string, number>();
  /** Per worker: its open connections by client, and their total, released when it exits. */
  readonly #openByWorker = new Map<number, Map<string, number>>();
  readonly #heldByWorker = new Map<number, number>();
  #connectionBuckets: LruMap<Bucket>;
  #requestBuckets: LruMap<Bucket>;
  #breaches: LruMap<Breaches>;

  constructor(
    settings: LimitSettings,
    /** Called once when a client's breaches within the window reach ban_after_breaches; `workerId` reported the last one. */
    private readonly onBreachLimit: (ip: string, breaches: number, workerId: number) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#settings = settings;
    const capacity = settings.access.maxTrackedClients;
    this.#connectionBuckets = new LruMap(capacity);
    this.#requestBuckets = new LruMap(capacity);
    this.#breaches = new LruMap(capacity);
  }

  /** A reload: new limits apply from now on; the counts and buckets carry over. */
  reconfigure(settings: LimitSettings): void {
    const capacity = settings.access.maxTrackedClients;
    if (capacity !== this.#settings.access.maxTrackedClients) {
      this.#connectionBuckets = new LruMap(capacity);
      this.#requestBuckets = new LruMap(capacity);
      this.#breaches = new LruMap(capacity);
    }
    this.#settings = settings;
  }

  get openConnections(): number {
    return this.#openTotal;
  }

  /** Tracked entries, for the metrics and the memory-bound test. */
  get trackedClients(): { open: number; connectionBuckets: number; requestBuckets: number; breaches: number } {
    return {
      open: this.#openByIp.size,
      connectionBuckets: this.#connectionBuckets.size,
      requestBuckets: this.#requestBuckets.size,
      breaches: this.#breaches.size,
    };
  }

  /** A worker accepted a connection from `ip` and waits, reading nothing, for this answer. */
  connect(workerId: number, ip: string): ConnectVerdict {
    const { maxConnections, maxConnectionsPerIp, connectionRatePerIp, connectionBurstPerIp } = this.#settings.limits;
    let verdict: ConnectVerdict = 'ok';
    if (this.#openTotal >= maxConnections) verdict = 'max_connections';
    else if ((this.#openByIp.get(ip) ?? 0) >= maxConnectionsPerIp) verdict = 'max_connections_per_ip';
    // New connections per second: a bucket of connection_burst_per_ip, refilled at the rate.
    else if (this.#take(this.#connectionBuckets, ip, connectionRatePerIp, connectionBurstPerIp, 1) === 0) verdict = 'connection_rate';
    if (verdict !== 'ok') {
      this.breach(ip, 1, workerId);
      return verdict;
    }
    this.#openTotal += 1;
    this.#openByIp.set(ip, (this.#openByIp.get(ip) ?? 0) + 1);
    let mine = this.#openByWorker.get(workerId);
    if (mine === undefined) this.#openByWorker.set(workerId, (mine = new Map()));
    mine.set(ip, (mine.get(ip) ?? 0) + 1);
    this.#heldByWorker.set(workerId, (this.#heldByWorker.get(workerId) ?? 0) + 1);
    return 'ok';
  }

  /**
   * A connection `connect` let in has closed. Unknown pairs are ignored (a
   * confused worker cannot push counts below zero): false for those.
   */
  disconnect(workerId: number, ip: string): boolean {
    const mine = this.#openByWorker.get(workerId);
    const count = mine?.get(ip);
    if (mine === undefined || count === undefined) return false;
    if (count === 1) mine.delete(ip);
    else mine.set(ip, count - 1);
    this.#heldByWorker.set(workerId, (this.#heldByWorker.get(workerId) ?? 1) - 1);
    this.#release(ip, 1);
    return true;
  }

  /** Connections `workerId` holds open now. */
  heldBy(workerId: number): number {
    return this.#heldByWorker.get(workerId) ?? 0;
  }

  /** Whether `workerId` holds a connection from `ip` now. */
  holds(workerId: number, ip: string): boolean {
    return this.#openByWorker.get(workerId)?.has(ip) ?? false;
  }

  /** A worker exited: whatever it still held open is closed now. */
  workerGone(workerId: number): void {
    const mine = this.#openByWorker.get(workerId);
    if (mine === undefined) return;
    this.#openByWorker.delete(workerId);
    this.#heldByWorker.delete(workerId);
    for (const [ip, count] of mine) this.#release(ip, count);
  }

  /** A worker asks for up to `want` request tokens for `ip`. */
  lease(ip: string, want: number): Grant {
    const rate = this.#settings.rateLimit;
    if (rate === null) return { granted: want, retryAfterMs: 0 };
    const cap = Math.max(1, Math.floor(rate.burst * LEASE_SHARE_OF_BURST));
    const granted = this.#take(this.#requestBuckets, ip, rate.requestsPerSecond, rate.burst, Math.min(Math.max(1, want), cap));
    if (granted > 0) return { granted, retryAfterMs: 0 };
    const bucket = this.#requestBuckets.get(ip);
    const missing = 1 - (bucket?.tokens ?? 0);
    return { granted: 0, retryAfterMs: Math.max(1, Math.ceil((missing / rate.requestsPerSecond) * 1000)) };
  }

  /** Tokens a worker leased and did not spend. */
  giveBack(ip: string, tokens: number): void {
    const rate = this.#settings.rateLimit;
    const bucket = this.#requestBuckets.get(ip);
    if (rate === null || bucket === undefined || tokens <= 0) return;
    this.#refill(bucket, rate.requestsPerSecond, rate.burst);
    bucket.tokens = Math.min(rate.burst, bucket.tokens + tokens);
  }

  /** Limit breaches by `ip` (refused connections, 429s) that `workerId` saw; enough of them within the window ban it. */
  breach(ip: string, count: number, workerId: number): void {
    const { banAfterBreaches, breachWindowMs } = this.#settings.access;
    if (banAfterBreaches === 0 || count <= 0) return;
    const now = this.now();
    let entry = this.#breaches.get(ip);
    if (entry === undefined || now - entry.windowStart > breachWindowMs) {
      entry = { count: 0, windowStart: now };
      this.#breaches.set(ip, entry);
    }
    const before = entry.count;
    entry.count += count;
    if (before < banAfterBreaches && entry.count >= banAfterBreaches) this.onBreachLimit(ip, entry.count, workerId);
  }

  /** Forgets `ip`'s breaches (its ban was lifted as the word of a condemned worker): the next ones count from zero. */
  forgive(ip: string): void {
    this.#breaches.delete(ip);
  }

  /** Drops what says no more than a fresh entry would: refilled buckets, closed breach windows. */
  sweep(): void {
    const now = this.now();
    const { limits, rateLimit, access } = this.#settings;
    const full = (rate: number, burst: number) => (bucket: Bucket) => bucket.tokens + ((now - bucket.at) / 1000) * rate >= burst;
    this.#connectionBuckets.prune(full(limits.connectionRatePerIp, limits.connectionBurstPerIp));
    if (rateLimit !== null) this.#requestBuckets.prune(full(rateLimit.requestsPerSecond, rateLimit.burst));
    this.#breaches.prune((entry) => now - entry.windowStart > access.breachWindowMs);
  }

  /** Takes up to `want` whole tokens from `ip`'s bucket; returns how many. */
  #take(table: LruMap<Bucket>, ip: string, rate: number, burst: number, want: number): number {
    let bucket = table.get(ip);
    if (bucket === undefined) {
      bucket = { tokens: burst, at: this.now() };
      table.set(ip, bucket);
    } else {
      this.#refill(bucket, rate, burst);
    }
    const taken = Math.min(want, Math.floor(bucket.tokens));
    bucket.tokens -= taken;
    return taken;
  }

  #refill(bucket: Bucket, rate: number, burst: number): void {
    const now = this.now();
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
  }

  #release(ip: string, count: number): void {
    this.#openTotal = Math.max(0, this.#openTotal - count);
    const left = (this.#openByIp.get(ip) ?? 0) - count;
    if (left > 0) this.#openByIp.set(ip, left);
    else this.#openByIp.delete(ip);
  }
}
