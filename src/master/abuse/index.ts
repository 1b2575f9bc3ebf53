/**
 * Abuse control as the master runs it: the server-wide limits per client
 * (client-limits.ts), the ban list (bans.ts) and the IDS score per client,
 * all outliving worker generations, so a reload neither resets a limit nor
 * lifts a ban. Workers ask (LIM_CONNECT, LIM_LEASE) and report (LIM_CLOSED,
 * LIM_REPORT, IDS_MATCH); every ban change reaches every worker.
 *
 * Every worker is taken to be compromised (src/master/worker-budget.ts): it
 * may hold no more connection slots than it has descriptors, speak only for
 * clients it holds a connection from (unless its config trusts a forwarding
 * proxy), and cause only so many bans a minute. Over that it is condemned
 * (killed, audited) and what it asked is not done; the bans it caused are
 * lifted, since its word is worth nothing. Each ban names the worker whose
 * report caused it.
 *
 * Whitelisted clients ([security.ddos].whitelist) are never limited (the
 * workers do not even ask) and never banned, whoever asks for the ban.
 * (Over 400 lines by a few: the one place every worker's word about a client
 * is weighed, which reads best whole.)
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { CompiledConfig } from '../../config/types.js';
import type { MasterMessage, WorkerMessage } from '../../ipc/messages.js';
import { CidrSet, clientKey } from '../../net/cidr.js';
import type { AuditLog } from '../audit-log.js';
import { BANS_PER_MINUTE, type WorkerBudget } from '../worker-budget.js';
import { banExemptions } from './ban-exempt.js';
import { BanList, type Ban, type BanCause, type BanChange } from './bans.js';
import { ClientLimits, LruMap, type LimitSettings } from './client-limits.js';

/** How often refilled buckets and stale scores are dropped. */
const SWEEP_INTERVAL_MS = 10_000;
/**
 * An IDS score halves every five minutes: a scanner's burst of probes adds
 * up within seconds, while one odd request a day never does.
 */
const IDS_SCORE_HALF_LIFE_MS = 5 * 60_000;

/** One live worker as abuse control sees it. */
export interface WorkerLink {
  /** Unique over the master's life, unlike pids. */
  readonly id: number;
  readonly pid: number | undefined;
  readonly generation: number;
  readonly slot: number;
  readonly uid: number | null;
  readonly budget: WorkerBudget;
  /** True once condemned: nothing more it asks is done. */
  readonly condemned: boolean;
  post(message: MasterMessage): void;
  /** Ends the worker for a budget it broke (the supervisor writes the one audit event). */
  condemn(rule: string, detail: string): void;
}

/**
 * Where this node's bans go to be shared with other nodes (a cluster:
 * src/cluster/bans.ts). Bans that came from the other nodes are applied
 * with applySharedBan / liftSharedBan and never sent back.
 */
export interface BanReplica {
  /** A ban made on this node (limits, IDS, admin). */
  banned(ban: Ban): void;
  /** A ban an admin lifted on this node. */
  lifted(ip: string): void;
}

export type LimitMessage = Extract<WorkerMessage, { type: 'LIM_CONNECT' | 'LIM_CLOSED' | 'LIM_LEASE' | 'LIM_REPORT' | 'IDS_MATCH' }>;

interface IdsScore {
  score: number;
  at: number;
  alerted: boolean;
}

const causeOf = (worker: WorkerLink): BanCause => ({ slot: worker.slot, pid: worker.pid, generation: worker.generation, uid: worker.uid });

export class AbuseControl {
  #config: CompiledConfig;
  #whitelist: CidrSet;
  /** ignore_ip: limits and the IDS never ban these (ban-exempt.ts); an admin still may. */
  #neverBanned: CidrSet;
  readonly #limits: ClientLimits;
  readonly #bans: BanList;
  #idsScores: LruMap<IdsScore>;
  readonly #sweep: NodeJS.Timeout;
  readonly #self = { role: 'master', pid: process.pid } as const;
  #replica: BanReplica | null = null;
  /** True while a ban from another node is being applied: it is not shared back. */
  #applyingShared = false;
  /** The live workers that asked something, by link id. */
  readonly #links = new Map<number, WorkerLink>();
  /** Link id -> the clients whose ban its report caused (lifted if it is condemned). */
  readonly #bannedBy = new Map<number, Set<string>>();

  constructor(
    config: CompiledConfig,
    private readonly log: Logger,
    private readonly audit: AuditLog,
    /** Sends to every live worker of every generation. */
    private readonly broadcast: (message: MasterMessage) => void,
    private readonly onBanAdded: (source: string) => void = () => undefined,
  ) {
    this.#config = config;
    this.#whitelist = new CidrSet(config.access.whitelist);
    this.#neverBanned = banExemptions(config.access.ignoreIp);
    this.#limits = new ClientLimits(settingsOf(config), (ip, breaches, workerId) => this.#banForBreaches(ip, breaches, workerId));
    this.#idsScores = new LruMap(config.access.maxTrackedClients);
    this.#bans = new BanList(path.join(config.server.stateDir, 'bans.json'), config.access.maxBans, log, (change) =>
      this.#banChanged(change),
    );
    this.#bans.load();
    this.#sweep = setInterval(() => this.#sweepTables(), SWEEP_INTERVAL_MS);
    this.#sweep.unref();
  }

  reconfigure(config: CompiledConfig): void {
    this.#config = config;
    this.#whitelist = new CidrSet(config.access.whitelist);
    this.#neverBanned = banExemptions(config.access.ignoreIp);
    this.#limits.reconfigure(settingsOf(config));
    this.#bans.maxBans = config.access.maxBans;
    if (config.access.maxTrackedClients !== this.#idsScores.capacity) this.#idsScores = new LruMap(config.access.maxTrackedClients);
  }

  /** What a new worker gets before it starts accepting. */
  banSync(): MasterMessage {
    return { type: 'BAN_SYNC', bans: this.#bans.list().map((ban) => [ban.ip, ban.until]) };
  }

  get openConnections(): number {
    return this.#limits.openConnections;
  }

  get activeBans(): number {
    return this.#bans.size;
  }

  /** A worker's question or report, checked against its budget first. */
  handle(worker: WorkerLink, message: LimitMessage): void {
    if (worker.condemned) return;
    this.#links.set(worker.id, worker);
    switch (message.type) {
      case 'LIM_CONNECT': {
        // Workers do not ask for whitelisted clients; one that does (its config predates a reload) is let in uncounted.
        if (this.#whitelist.has(message.ip)) {
          worker.post({ type: 'LIM_ADMIT', id: message.id, verdict: 'ok' });
          return;
        }
        const lacks = worker.budget.slotProblem(this.#limits.heldBy(worker.id) + 1);
        if (lacks !== null) {
          worker.condemn('budget.connections', lacks);
          return;
        }
        const verdict = this.#bans.isBanned(message.ip) ? 'banned' : this.#limits.connect(worker.id, message.ip);
        worker.post({ type: 'LIM_ADMIT', id: message.id, verdict });
        return;
      }
      case 'LIM_CLOSED':
        for (const ip of message.ips) if (this.#limits.disconnect(worker.id, ip)) worker.budget.closed(ip);
        return;
      case 'LIM_LEASE': {
        if (!this.#speaksFor(worker, message.ip)) return;
        const grant = this.#limits.lease(message.ip, message.want);
        if (grant.granted === 0) this.#limits.breach(message.ip, 1, worker.id);
        worker.post({ type: 'LIM_GRANT', id: message.id, granted: grant.granted, retryAfterMs: grant.retryAfterMs });
        return;
      }
      case 'LIM_REPORT':
        for (const [ip, unspent, refused] of message.entries) {
          if (!this.#speaksFor(worker, ip)) return;
          this.#limits.giveBack(ip, unspent);
          this.#limits.breach(ip, refused, worker.id);
          if (worker.condemned) return;
        }
        return;
      case 'IDS_MATCH':
        if (!worker.budget.knowsRule(message.rule)) {
          worker.condemn('vocabulary.ids_rule', `IDS rule ${JSON.stringify(message.rule)}, not a rule of its config`);
          return;
        }
        if (!this.#speaksFor(worker, message.ip)) return;
        this.#scoreIds(worker, message.ip, message.rule, message.score);
        return;
    }
  }

  /** The worker is gone: what it held is released. */
  workerGone(worker: WorkerLink): void {
    this.#limits.workerGone(worker.id);
    this.#links.delete(worker.id);
    this.#bannedBy.delete(worker.id);
  }

  /** The worker was condemned for what it sent: the bans its reports caused are lifted. Returns how many. */
  workerCondemned(worker: WorkerLink): number {
    const banned = this.#bannedBy.get(worker.id);
    this.#bannedBy.delete(worker.id);
    let lifted = 0;
    for (const ip of banned ?? []) {
      const cause = this.#bans.get(ip)?.worker;
      if (cause === undefined || cause.pid !== worker.pid || cause.generation !== worker.generation) continue;
      if (!this.#bans.remove(ip, 'revoked')) continue;
      lifted++;
      // What it reported is forgotten too: a client that really misbehaves is banned again by its next breaches.
      this.#limits.forgive(ip);
      this.#idsScores.delete(ip);
    }
    return lifted;
  }

  /** Writes the ban list if a change is pending (on stop). */
  flush(): Promise<void> {
    return this.#bans.flush();
  }

  listBans(): Ban[] {
    return this.#bans.list();
  }

  /** An admin's ban (CLI). Refused for whitelisted clients and for text that is not an address. */
  adminBan(text: string, seconds: number | undefined, reason: string): { ok: true; ban: Ban } | { ok: false; reason: string } {
    const ip = clientKey(text);
    if (ip === null) return { ok: false, reason: `not an IP address: ${JSON.stringify(text.slice(0, 64))}` };
    if (this.#whitelist.has(ip)) return { ok: false, reason: `${ip} is in security.ddos.whitelist, which is never banned` };
    const ban = this.#bans.add(ip, seconds ?? this.#config.access.banSeconds, 'admin', reason || 'banned by an administrator');
    if (ban === null) return { ok: false, reason: `the ban table is full (security.ddos.max_bans = ${this.#config.access.maxBans})` };
    return { ok: true, ban };
  }

  adminUnban(text: string): { ok: boolean; reason?: string } {
    const ip = clientKey(text);
    if (ip === null) return { ok: false, reason: `not an IP address: ${JSON.stringify(text.slice(0, 64))}` };
    return this.#bans.remove(ip) ? { ok: true } : { ok: false, reason: `${ip} is not banned` };
  }

  /** From now on, bans made here are shared through `replica`. */
  replicateBans(replica: BanReplica): void {
    this.#replica = replica;
  }

  /** A ban another node made: applied here too, unless the address is in this node's whitelist (whitelists stay local). */
  applySharedBan(text: string, until: number, source: Ban['source'], reason: string): void {
    const ip = clientKey(text);
    const seconds = (until - Date.now()) / 1000;
    if (ip === null || seconds <= 0 || this.#whitelist.has(ip) || (source !== 'admin' && this.#neverBanned.has(ip))) return;
    if ((this.#bans.get(ip)?.until ?? 0) >= until - 1000) return; // our own ban coming back, or one we already hold longer
    this.#applyingShared = true;
    try {
      this.#bans.add(ip, seconds, source, reason);
    } finally {
      this.#applyingShared = false;
    }
  }

  /** Another node's admin lifted a ban. */
  liftSharedBan(text: string): void {
    const ip = clientKey(text);
    if (ip === null) return;
    this.#applyingShared = true;
    try {
      this.#bans.remove(ip);
    } finally {
      this.#applyingShared = false;
    }
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#bans.close();
  }

  /**
   * A client it holds (or recently held) a connection from; any client when
   * its config trusts a forwarding proxy (the client is then whoever the
   * proxy names). Else the worker is condemned and false returned.
   */
  #speaksFor(worker: WorkerLink, ip: string): boolean {
    const { budget } = worker;
    if (budget.speaksForOthers || this.#whitelist.has(ip) || budget.exempt(ip)) return true;
    if (this.#limits.holds(worker.id, ip) || budget.heldRecently(ip)) return true;
    worker.condemn('attribution.client', `spoke for ${ip}, which it holds no connection from`);
    return false;
  }

  /** Bans `ip` on `worker`'s word, within its ban budget (else it is condemned and nothing is banned). */
  #banFor(worker: WorkerLink, ip: string, source: 'limits' | 'ids', reason: string): void {
    const held = this.#limits.heldBy(worker.id);
    if (!worker.budget.spendBan(held)) {
      worker.condemn('budget.bans', `a ban past ${BANS_PER_MINUTE + held} within a minute (${ip})`);
      return;
    }
    const ban = this.#bans.add(ip, this.#config.access.banSeconds, source, reason, causeOf(worker));
    if (ban === null) return;
    let mine = this.#bannedBy.get(worker.id);
    if (mine === undefined) this.#bannedBy.set(worker.id, (mine = new Set()));
    mine.add(ip);
  }

  #banForBreaches(ip: string, breaches: number, workerId: number): void {
    if (this.#whitelist.has(ip) || this.#neverBanned.has(ip) || this.#bans.isBanned(ip)) return;
    const worker = this.#links.get(workerId);
    if (worker === undefined || worker.condemned) return;
    const windowSeconds = this.#config.access.breachWindowMs / 1000;
    this.#banFor(worker, ip, 'limits', `${breaches} limit breaches within ${windowSeconds} s`);
  }

  #scoreIds(worker: WorkerLink, ip: string, rule: string, points: number): void {
    const ids = this.#config.ids;
    if (ids === null || this.#whitelist.has(ip)) return;
    const now = performance.now();
    let entry = this.#idsScores.get(ip);
    if (entry === undefined) {
      entry = { score: 0, at: now, alerted: false };
      this.#idsScores.set(ip, entry);
    }
    entry.score = entry.score * 0.5 ** ((now - entry.at) / IDS_SCORE_HALF_LIFE_MS) + points;
    entry.at = now;
    if (entry.score < ids.alertThreshold) entry.alerted = false;
    const source = { role: 'worker', pid: worker.pid, generation: worker.generation, slot: worker.slot } as const;
    if (entry.score >= ids.alertThreshold && !entry.alerted) {
      entry.alerted = true;
      // Written on this worker's word: within its audit budget.
      if (worker.budget.spendAudit())
        this.audit.write(
          'security',
          {
            event: 'ids.alert',
            clientIp: ip,
            detail: `score ${entry.score.toFixed(1)} reached alert_threshold ${ids.alertThreshold} (last rule ${rule})`,
          },
          source,
        );
    }
    if (entry.score >= ids.blockThreshold && !this.#neverBanned.has(ip) && !this.#bans.isBanned(ip)) {
      this.#banFor(
        worker,
        ip,
        'ids',
        `IDS score ${entry.score.toFixed(1)} reached block_threshold ${ids.blockThreshold} (last rule ${rule})`,
      );
    }
  }

  #banChanged(change: BanChange): void {
    if (change.kind === 'full') {
      this.audit.write(
        'security',
        {
          event: 'ban.table_full',
          clientIp: change.refused,
          detail: `security.ddos.max_bans (${change.maxBans}) reached: new bans are refused until some expire or are removed`,
        },
        this.#self,
      );
      this.log.error({ maxBans: change.maxBans, refused: change.refused }, 'the ban table is full: new bans are refused');
      return;
    }
    if (!this.#applyingShared && change.kind === 'add') this.#replica?.banned(change.ban);
    if (!this.#applyingShared && change.kind === 'lift' && change.why !== 'expired') this.#replica?.lifted(change.ip);
    if (change.kind === 'add') {
      this.onBanAdded(change.ban.source);
      this.broadcast({ type: 'BAN_ADD', ip: change.ban.ip, until: change.ban.until });
      const category = change.ban.source === 'admin' ? 'admin' : 'security';
      this.audit.write(
        category,
        { event: change.ban.source === 'admin' ? 'admin.ban_add' : 'ban.added', clientIp: change.ban.ip, detail: change.ban.reason },
        this.#self,
        {
          until: new Date(change.ban.until).toISOString(),
          source: change.ban.source,
          ...(change.ban.worker !== undefined && { causedBy: change.ban.worker }),
        },
      );
      this.log.warn(
        { clientIp: change.ban.ip, until: new Date(change.ban.until).toISOString(), source: change.ban.source, reason: change.ban.reason },
        'client banned',
      );
    } else {
      this.broadcast({ type: 'BAN_LIFT', ip: change.ip });
      if (change.why === 'admin') this.audit.write('admin', { event: 'admin.ban_remove', clientIp: change.ip }, this.#self);
      else if (change.why === 'revoked')
        this.audit.write(
          'security',
          { event: 'ban.revoked', clientIp: change.ip, detail: 'caused by a worker condemned since' },
          this.#self,
        );
      else this.audit.write('security', { event: 'ban.expired', clientIp: change.ip }, this.#self);
      this.log.info({ clientIp: change.ip, why: change.why }, 'ban lifted');
    }
  }

  #sweepTables(): void {
    this.#limits.sweep();
    const now = performance.now();
    const ids = this.#config.ids;
    // A score under a tenth of the alert threshold is as good as none.
    const floor = ids === null ? Infinity : ids.alertThreshold / 10;
    this.#idsScores.prune((entry) => entry.score * 0.5 ** ((now - entry.at) / IDS_SCORE_HALF_LIFE_MS) < floor);
  }
}

function settingsOf(config: CompiledConfig): LimitSettings {
  return { limits: config.limits, rateLimit: config.rateLimit, access: config.access };
}
