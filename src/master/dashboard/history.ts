/**
 * What the dashboard remembers of the last 15 minutes, all bounded whatever
 * the traffic: requests by status class (from the master's totals, sampled),
 * refusals per client (from audit events), and the last events themselves.
 */
import type { AuditEntry } from '../audit-log.js';

export const HISTORY_MS = 15 * 60_000;

/** Requests answered in one interval, by status class: index 0 is 1xx, 4 is 5xx. */
export interface TrafficBucket {
  /** Epoch ms at the end of the interval. */
  readonly at: number;
  readonly seconds: number;
  readonly classes: readonly [number, number, number, number, number];
}

/**
 * Requests per status class over time. `sample` takes the running totals by
 * status (counted by the master since it started) and keeps the difference
 * from the previous sample.
 */
export class TrafficHistory {
  readonly #buckets: TrafficBucket[] = [];
  #previous = new Map<number, number>();
  #previousAt: number;

  constructor(startedAt: number) {
    this.#previousAt = startedAt;
  }

  sample(now: number, totalsByStatus: ReadonlyMap<number, number>): void {
    const classes: [number, number, number, number, number] = [0, 0, 0, 0, 0];
    for (const [status, total] of totalsByStatus) {
      const index = Math.floor(status / 100) - 1;
      if (index >= 0 && index < 5) classes[index]! += Math.max(0, total - (this.#previous.get(status) ?? 0));
    }
    this.#previous = new Map(totalsByStatus);
    const seconds = Math.max(0.001, (now - this.#previousAt) / 1000);
    this.#previousAt = now;
    this.#buckets.push({ at: now, seconds, classes });
    while (this.#buckets.length > 0 && this.#buckets[0]!.at <= now - HISTORY_MS) this.#buckets.shift();
  }

  buckets(): readonly TrafficBucket[] {
    return this.#buckets;
  }
}

/** Clients tracked per minute at most; refusals of any more are counted together. */
const MAX_CLIENTS_PER_MINUTE = 10_000;
const MINUTE_MS = 60_000;

export interface RefusedClient {
  readonly ip: string;
  readonly count: number;
  /** The audit event of the last refusal. */
  readonly lastEvent: string;
  readonly lastAt: number;
}

interface Tally {
  count: number;
  lastEvent: string;
  lastAt: number;
}

/** Refusals per client, in one-minute slices over the last 15 minutes. */
export class RefusalTally {
  readonly #minutes = new Map<number, { clients: Map<string, Tally>; untracked: number }>();

  add(ip: string, count: number, event: string, now: number): void {
    const minute = Math.floor(now / MINUTE_MS);
    let slice = this.#minutes.get(minute);
    if (slice === undefined) {
      slice = { clients: new Map(), untracked: 0 };
      this.#minutes.set(minute, slice);
      for (const old of this.#minutes.keys()) if (old <= minute - HISTORY_MS / MINUTE_MS) this.#minutes.delete(old);
    }
    const tally = slice.clients.get(ip);
    if (tally !== undefined) {
      tally.count += count;
      tally.lastEvent = event;
      tally.lastAt = now;
    } else if (slice.clients.size < MAX_CLIENTS_PER_MINUTE) slice.clients.set(ip, { count, lastEvent: event, lastAt: now });
    else slice.untracked += count;
  }

  /** The `limit` clients refused most in the last 15 minutes, and the refusals of clients past the per-minute cap. */
  top(limit: number, now: number): { clients: RefusedClient[]; untracked: number } {
    const first = Math.floor(now / MINUTE_MS) - HISTORY_MS / MINUTE_MS;
    const totals = new Map<string, Tally>();
    let untracked = 0;
    for (const [minute, slice] of this.#minutes) {
      if (minute <= first) continue;
      untracked += slice.untracked;
      for (const [ip, tally] of slice.clients) {
        const sum = totals.get(ip);
        if (sum === undefined) totals.set(ip, { ...tally });
        else {
          sum.count += tally.count;
          if (tally.lastAt >= sum.lastAt) Object.assign(sum, { lastEvent: tally.lastEvent, lastAt: tally.lastAt });
        }
      }
    }
    const clients = [...totals]
      .map(([ip, tally]) => ({ ip, ...tally }))
      .sort((a, b) => b.count - a.count || b.lastAt - a.lastAt)
      .slice(0, limit);
    return { clients, untracked };
  }
}

/** The last `capacity` entries, oldest dropped first. */
export class EventRing<T> {
  readonly #entries: T[] = [];
  constructor(readonly capacity: number) {}

  push(entry: T): void {
    this.#entries.push(entry);
    if (this.#entries.length > this.capacity) this.#entries.shift();
  }

  /** Newest first. */
  newestFirst(): T[] {
    return [...this.#entries].reverse();
  }
}

/** Audit events that mean a client was refused or cut off (a 404 or a range error is not a refusal). */
const NOT_REFUSALS = new Set(['request.not_found', 'request.bad_range', 'request.method_not_allowed', 'request.unknown_host']);

export function isRefusal(event: string): boolean {
  if (NOT_REFUSALS.has(event)) return false;
  return /^(connection|proxy_protocol|request)\./.test(event) || event === 'response.write_timeout' || event === 'auth.dashboard_failed';
}

/**
 * How many refusals one audit line stands for: events a client can cause at
 * line rate are written once a second, their detail ending in
 * "(N more in the last second not logged)" (the worker's withSuppressed).
 */
export function refusalCount(entry: AuditEntry): number {
  const detail = entry.fields.detail;
  const match = typeof detail === 'string' ? /\((\d{1,9}) more in the last second not logged\)$/.exec(detail) : null;
  return 1 + (match === null ? 0 : Number(match[1]));
}
