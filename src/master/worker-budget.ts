/**
 * What one worker may ask of the master, in proportion to what it serves
 * (docs/security.md, "Budgets"). The worker is taken to be compromised: a
 * state-changing request beyond its budget ends it (the caller condemns it),
 * except audit events, which past their rate are counted and not written.
 *
 * - Connection slots (LIM_CONNECT): never more than the descriptors the
 *   worker has open (/proc/<pid>/fd), since every connection it accepted
 *   is one. Counted again only when the slots pass the last count by a
 *   slack, so an honest worker's growth costs one directory read per slack.
 * - Clients it speaks for (LIM_LEASE, LIM_REPORT, IDS_MATCH): when its
 *   config trusts no forwarding proxy, a client it holds or recently held a
 *   connection from; behind a trusted proxy any client (the ban budget
 *   bounds those).
 * - Bans its reports cause: BANS_PER_MINUTE, plus one per connection it holds.
 * - Scrapes (MET_SCRAPE): one outstanding, until its answer reached the kernel.
 * - Metric labels (MET_REPORT): its config's vhosts, its IDS rules, and no
 *   more open connections than its descriptor limit allows.
 * - Audit events: AUDIT_EVENTS_PER_SECOND (burst AUDIT_BURST), then counted.
 */
import { readdirSync } from 'node:fs';
import type { CompiledConfig } from '../config/types.js';
import type { WorkerMessage } from '../ipc/messages.js';
import { BUILTIN_IDS_RULES } from '../ipc/worker-events.js';
import { CidrSet } from '../net/cidr.js';

/** Bans a worker may cause per minute besides one per connection it holds. */
export const BANS_PER_MINUTE = 60;
/** Audit events a worker may have written per second (sustained), and at once. */
export const AUDIT_EVENTS_PER_SECOND = 100;
export const AUDIT_BURST = 500;
/** Slots held past the last descriptor count before it is counted again: at least this, or this share of the count. */
const SLOT_SLACK_MIN = 16;
const SLOT_SLACK_SHARE = 1 / 8;
/** How long after its last connection closed a worker may still speak for a client (leases come back 250 ms late). */
const RECENT_CLIENT_MS = 30_000;
/** Recently closed clients remembered per worker; past it the attribution check rests until the window has passed. */
const RECENT_CLIENTS_TRACKED = 16_384;
const MINUTE_MS = 60_000;

type Report = Extract<WorkerMessage, { type: 'MET_REPORT' }>;

export class WorkerBudget {
  readonly #pid: number | undefined;
  readonly #maxOpenFiles: number;
  /** Whether this worker's config lets it name clients other than its TCP peers (a trusted forwarding proxy). */
  readonly speaksForOthers: boolean;
  readonly #vhostLabels: ReadonlySet<string>;
  readonly #idsRules: ReadonlySet<string>;
  readonly #whitelist: CidrSet;
  /** Slots it may hold without a new descriptor count. */
  #slotBound = 0;
  /** performance.now() of each ban it caused within the last minute, oldest first. */
  #bans: number[] = [];
  #auditTokens = AUDIT_BURST;
  #auditAt = performance.now();
  /** Audit events counted and not written since the last time this was read. */
  suppressedAudit = 0;
  /** A MET_SCRAPE is being answered. */
  scrapeOutstanding = false;
  /** Client -> performance.now() its last connection on this worker closed. */
  readonly #recent = new Map<string, number>();
  /** The attribution check rests until then (the recent table overflowed). */
  #restUntil = 0;

  constructor(pid: number | undefined, config: CompiledConfig) {
    this.#pid = pid;
    this.#maxOpenFiles = config.isolation.maxOpenFiles;
    this.speaksForOthers = config.forwarded.trustProxy && config.forwarded.trustedProxies.length > 0;
    this.#vhostLabels = new Set(['', ...config.vhosts.map((vhost) => vhost.domains[0] ?? '')]);
    this.#idsRules = new Set([...BUILTIN_IDS_RULES, ...(config.ids?.rules.map((rule) => rule.name) ?? [])]);
    this.#whitelist = new CidrSet(config.access.whitelist);
  }

  /** A client its config whitelists: it never asks about those at accept, and may still report them. */
  exempt(ip: string): boolean {
    return this.#whitelist.has(ip);
  }

  /**
   * May the worker hold `held` slots? Counts its descriptors again when
   * `held` passes the last bound; null when it may, else what it lacks.
   */
  slotProblem(held: number): string | null {
    if (held <= this.#slotBound) return null;
    const descriptors = this.#descriptors();
    if (descriptors === null) return null; // gone: its exit releases everything
    this.#slotBound = descriptors + Math.max(SLOT_SLACK_MIN, Math.floor(descriptors * SLOT_SLACK_SHARE));
    return held <= this.#slotBound ? null : `claims ${held} open connections with ${descriptors} descriptors open`;
  }

  /** A connection from `ip` closed on this worker. */
  closed(ip: string): void {
    const now = performance.now();
    this.#recent.delete(ip);
    this.#recent.set(ip, now);
    if (this.#recent.size <= RECENT_CLIENTS_TRACKED) return;
    const [oldest, at] = this.#recent.entries().next().value as [string, number];
    this.#recent.delete(oldest);
    // Forgetting a client it may still report on: rest the check rather than condemn an honest worker.
    if (now - at < RECENT_CLIENT_MS) this.#restUntil = now + RECENT_CLIENT_MS;
  }

  /** May the worker speak for `ip`, which it holds no connection from now? */
  heldRecently(ip: string): boolean {
    const now = performance.now();
    if (now < this.#restUntil) return true;
    const at = this.#recent.get(ip);
    return at !== undefined && now - at < RECENT_CLIENT_MS;
  }

  /** One more ban caused by this worker's report: false when over budget (the ban is not made). */
  spendBan(heldSlots: number): boolean {
    const now = performance.now();
    while (this.#bans.length > 0 && now - this.#bans[0]! >= MINUTE_MS) this.#bans.shift();
    if (this.#bans.length >= BANS_PER_MINUTE + heldSlots) return false;
    this.#bans.push(now);
    return true;
  }

  /** One more audit event: false when over the rate (counted in suppressedAudit, not written). */
  spendAudit(): boolean {
    const now = performance.now();
    this.#auditTokens = Math.min(AUDIT_BURST, this.#auditTokens + ((now - this.#auditAt) / 1000) * AUDIT_EVENTS_PER_SECOND);
    this.#auditAt = now;
    if (this.#auditTokens >= 1) {
      this.#auditTokens -= 1;
      return true;
    }
    this.suppressedAudit += 1;
    return false;
  }

  /** A label or count a worker's config cannot produce, or null. */
  reportProblem(report: Report): string | null {
    if (report.connections > this.#maxOpenFiles) return `${report.connections} open connections (max_open_files is ${this.#maxOpenFiles})`;
    for (const [vhost] of report.requests)
      if (!this.#vhostLabels.has(vhost)) return `vhost label ${JSON.stringify(vhost)}, not a vhost of its config`;
    for (const [rule] of report.idsMatches)
      if (!this.#idsRules.has(rule)) return `IDS rule ${JSON.stringify(rule)}, not a rule of its config`;
    return null;
  }

  /** An IDS rule its config has. */
  knowsRule(rule: string): boolean {
    return this.#idsRules.has(rule);
  }

  #descriptors(): number | null {
    if (this.#pid === undefined) return null;
    try {
      return readdirSync(`/proc/${this.#pid}/fd`).length;
    } catch {
      return null;
    }
  }
}
