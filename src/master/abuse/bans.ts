/**
 * Temporary bans ([security.ddos].ban_seconds): clients refused at accept by
 * every worker until the ban runs out. The master owns the list: it adds
 * bans (repeated limit breaches, the IDS block threshold, an admin), tells
 * every worker of each change, and keeps the list in `state_dir/bans.json`
 * (root-only, replaced atomically) so a ban survives reload and restart.
 *
 * The table holds at most [security.ddos] max_bans; past it new bans are
 * refused, never older ones dropped (a flood must not lift real bans). The
 * file is written at most once per PERSIST_DELAY_MS, with asynchronous I/O:
 * a burst of bans costs one write, and no ban waits on the disk. A ban a
 * worker's report caused names that worker.
 */
import { lstatSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { writePrivateFileAsync } from '../../fs/private-file.js';
import { clientKey } from '../../net/cidr.js';

export type BanSource = 'limits' | 'ids' | 'admin';

/** The worker whose report caused a ban. */
export interface BanCause {
  readonly slot: number;
  readonly pid: number | undefined;
  readonly generation: number;
  readonly uid: number | null;
}

export interface Ban {
  readonly ip: string;
  /** Epoch milliseconds. */
  readonly until: number;
  readonly source: BanSource;
  readonly reason: string;
  /** The worker whose report caused it (limits, ids); absent for an admin's. */
  readonly worker?: BanCause;
}

const FILE_VERSION = 1;
/** A ban file larger than this is not ours. */
const MAX_FILE_BYTES = 256 * 1024 * 1024;
/** setTimeout's ceiling: later expiries are re-armed when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Changes within this long share one write of the file. */
const PERSIST_DELAY_MS = 1000;
/** Expiries within this long are handled together (one scan of the table). */
const EXPIRY_GRANULARITY_MS = 1000;

export type BanChange =
  | { kind: 'add'; ban: Ban }
  | { kind: 'lift'; ip: string; why: 'expired' | 'admin' | 'revoked' }
  /** max_bans reached: reported once, until the table has room again. */
  | { kind: 'full'; maxBans: number; refused: string };

export class BanList {
  readonly #bans = new Map<string, Ban>();
  #timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (epoch ms). */
  #timerAt = Infinity;
  #maxBans: number;
  #full = false;
  #persistTimer: NodeJS.Timeout | null = null;
  #writing: Promise<void> | null = null;
  #dirty = false;

  constructor(
    readonly file: string,
    maxBans: number,
    private readonly log: Logger,
    /** Every change, for the workers and the audit log. */
    private readonly onChange: (change: BanChange) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.#maxBans = maxBans;
  }

  set maxBans(value: number) {
    this.#maxBans = value;
  }

  /**
   * Reads the state file. A missing file is an empty list; a damaged one is
   * reported and set aside (renamed), never fatal: bans are a defence, not
   * a reason to stay down. More bans than max_bans: the latest to expire are kept.
   */
  load(): void {
    this.#read();
    // Said at every start: bans carried over from a previous run refuse clients before they send a byte.
    const count = this.#bans.size;
    this.log.info({ file: this.file, bans: count }, `loaded ${count} ban${count === 1 ? '' : 's'} from ${this.file}`);
  }

  #read(): void {
    let text = '';
    let notAFile = false;
    try {
      // A FIFO would block the read (and the master) forever; a link would be followed as root.
      const stat = lstatSync(this.file);
      if (!stat.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTREG' });
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'ENOTREG') {
        this.log.error({ err: error, file: this.file }, 'cannot read the ban list; starting without it');
        return;
      }
      notAFile = true;
    }
    const now = this.now();
    try {
      if (notAFile) throw new Error('not a regular file');
      if (text.length > MAX_FILE_BYTES) throw new Error('too large');
      const parsed = JSON.parse(text) as { version?: unknown; bans?: unknown };
      if (parsed.version !== FILE_VERSION || !Array.isArray(parsed.bans)) throw new Error('not a ban list');
      for (const entry of parsed.bans as Record<string, unknown>[]) {
        const ip = typeof entry.ip === 'string' ? clientKey(entry.ip) : null;
        const until = entry.until;
        const source = entry.source;
        if (
          ip === null ||
          typeof until !== 'number' ||
          !Number.isFinite(until) ||
          (source !== 'limits' && source !== 'ids' && source !== 'admin')
        ) {
          throw new Error(`bad entry ${JSON.stringify(entry).slice(0, 100)}`);
        }
        if (until <= now) continue;
        const reason = typeof entry.reason === 'string' ? entry.reason.slice(0, 200) : '';
        const worker = causeOf(entry.worker);
        this.#bans.set(ip, { ip, until, source, reason, ...(worker !== null && { worker }) });
      }
    } catch (error) {
      const aside = `${this.file}.damaged-${now}`;
      this.log.error({ file: this.file, movedTo: aside, why: (error as Error).message }, 'the ban list is damaged; starting without it');
      try {
        renameSync(this.file, aside);
      } catch {
        // Reported above; the next write replaces the file anyway.
      }
      this.#bans.clear();
    }
    if (this.#bans.size > this.#maxBans) {
      const kept = [...this.#bans.values()].sort((a, b) => b.until - a.until).slice(0, this.#maxBans);
      this.log.warn(
        { file: this.file, bans: this.#bans.size, maxBans: this.#maxBans },
        'more bans in the file than max_bans: the earliest to expire are dropped',
      );
      this.#bans.clear();
      for (const ban of kept) this.#bans.set(ban.ip, ban);
    }
    this.#arm();
  }

  list(): Ban[] {
    const now = this.now();
    return [...this.#bans.values()].filter((ban) => ban.until > now).sort((a, b) => a.until - b.until);
  }

  /** Bans in the table (some may have run out in the last second, before the expiry sweep). */
  get size(): number {
    return this.#bans.size;
  }

  /** The ban in force on `ip`, if any. */
  get(ip: string): Ban | undefined {
    const ban = this.#bans.get(ip);
    return ban !== undefined && ban.until > this.now() ? ban : undefined;
  }

  isBanned(ip: string): boolean {
    const ban = this.#bans.get(ip);
    return ban !== undefined && ban.until > this.now();
  }

  /**
   * Bans `ip` (a canonical client key) for `seconds`; an existing ban is
   * extended, never shortened. Null when the table is full (max_bans).
   */
  add(ip: string, seconds: number, source: BanSource, reason: string, worker?: BanCause): Ban | null {
    const until = this.now() + seconds * 1000;
    const existing = this.#bans.get(ip);
    if (existing === undefined && this.#bans.size >= this.#maxBans) {
      if (!this.#full) {
        this.#full = true;
        this.onChange({ kind: 'full', maxBans: this.#maxBans, refused: ip });
      }
      return null;
    }
    const ban: Ban =
      existing !== undefined && existing.until >= until
        ? existing
        : { ip, until, source, reason: reason.slice(0, 200), ...(worker !== undefined && { worker }) };
    this.#bans.set(ip, ban);
    this.#persist();
    if (ban.until < this.#timerAt) this.#arm();
    this.onChange({ kind: 'add', ban });
    return ban;
  }

  /** Returns false when `ip` was not banned. */
  remove(ip: string, why: 'admin' | 'revoked' = 'admin'): boolean {
    if (!this.#bans.delete(ip)) return false;
    this.#roomAgain();
    this.#persist();
    this.onChange({ kind: 'lift', ip, why });
    return true;
  }

  /** Writes any pending change now (on stop); resolves once it is on disk. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.#persistTimer !== null) {
        clearTimeout(this.#persistTimer);
        this.#persistTimer = null;
      }
      if (this.#writing !== null) {
        await this.#writing;
        continue;
      }
      if (!this.#dirty) return;
      this.#write();
    }
  }

  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#persistTimer !== null) clearTimeout(this.#persistTimer);
    this.#persistTimer = null;
  }

  #roomAgain(): void {
    if (this.#full && this.#bans.size < this.#maxBans) this.#full = false;
  }

  /** One timer, for the earliest expiry (at a granularity of EXPIRY_GRANULARITY_MS, so a full table is scanned at most once a second). */
  #arm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
    let next = Infinity;
    for (const ban of this.#bans.values()) next = Math.min(next, ban.until);
    if (next === Infinity) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(EXPIRY_GRANULARITY_MS, next - this.now() + 5));
    this.#timerAt = this.now() + delay;
    this.#timer = setTimeout(() => this.#expire(), delay);
    this.#timer.unref();
  }

  #expire(): void {
    const now = this.now();
    const expired = [...this.#bans.values()].filter((ban) => ban.until <= now);
    for (const ban of expired) this.#bans.delete(ban.ip);
    if (expired.length > 0) {
      this.#roomAgain();
      this.#persist();
    }
    this.#arm();
    for (const ban of expired) this.onChange({ kind: 'lift', ip: ban.ip, why: 'expired' });
  }

  /** A change to write: within PERSIST_DELAY_MS, with every other change by then. */
  #persist(): void {
    this.#dirty = true;
    if (this.#persistTimer !== null || this.#writing !== null) return;
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = null;
      this.#write();
    }, PERSIST_DELAY_MS);
    this.#persistTimer.unref();
  }

  /** Written whole to a temporary file, flushed, then renamed over the old one: never half a list. */
  #write(): void {
    this.#dirty = false;
    // One ban per line: the file stays readable, and no indentation per field.
    const body = `{"version":${FILE_VERSION},"bans":[\n${this.list()
      .map((ban) => JSON.stringify(ban))
      .join(',\n')}\n]}\n`;
    this.#writing = (async () => {
      try {
        mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
        await writePrivateFileAsync(this.file, body);
      } catch (error) {
        // The bans still hold in memory and in every worker; only a restart would forget them.
        this.log.error({ err: error, file: this.file }, 'cannot write the ban list');
      }
    })();
    void this.#writing.then(() => {
      this.#writing = null;
      if (this.#dirty) this.#persist();
    });
  }
}

function causeOf(value: unknown): BanCause | null {
  if (value === null || typeof value !== 'object') return null;
  const { slot, pid, generation, uid } = value as Record<string, unknown>;
  if (typeof slot !== 'number' || typeof generation !== 'number') return null;
  return {
    slot,
    pid: typeof pid === 'number' ? pid : undefined,
    generation,
    uid: typeof uid === 'number' ? uid : null,
  };
}
