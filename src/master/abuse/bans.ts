/**
 * Temporary bans ([security.ddos].ban_seconds): clients refused at accept by
 * every worker until the ban runs out. The master owns the list: it adds
 * bans (repeated limit breaches, the IDS block threshold, an admin), tells
 * every worker of each change, and keeps the list in `state_dir/bans.json`
 * (root-only, replaced atomically) so a ban survives reload and restart.
 */
import { lstatSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { clientKey } from '../../net/cidr.js';
import { writePrivateFile } from '../../fs/private-file.js';

export type BanSource = 'limits' | 'ids' | 'admin';

export interface Ban {
  readonly ip: string;
  /** Epoch milliseconds. */
  readonly until: number;
  readonly source: BanSource;
  readonly reason: string;
}

const FILE_VERSION = 1;
/** A ban file larger than this is not ours. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** setTimeout's ceiling: later expiries are re-armed when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export type BanChange = { kind: 'add'; ban: Ban } | { kind: 'lift'; ip: string; why: 'expired' | 'admin' };

export class BanList {
  readonly #bans = new Map<string, Ban>();
  #timer: NodeJS.Timeout | null = null;

  constructor(
    readonly file: string,
    private readonly log: Logger,
    /** Every change, for the workers and the audit log. */
    private readonly onChange: (change: BanChange) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Reads the state file. A missing file is an empty list; a damaged one is
   * reported and set aside (renamed), never fatal: bans are a defence, not
   * a reason to stay down.
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
        if (until > now)
          this.#bans.set(ip, { ip, until, source, reason: typeof entry.reason === 'string' ? entry.reason.slice(0, 200) : '' });
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
    this.#arm();
  }

  list(): Ban[] {
    const now = this.now();
    return [...this.#bans.values()].filter((ban) => ban.until > now).sort((a, b) => a.until - b.until);
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

  /** Bans `ip` (a canonical client key) for `seconds`; an existing ban is extended, never shortened. */
  add(ip: string, seconds: number, source: BanSource, reason: string): Ban {
    const until = this.now() + seconds * 1000;
    const existing = this.#bans.get(ip);
    const ban: Ban = existing !== undefined && existing.until >= until ? existing : { ip, until, source, reason: reason.slice(0, 200) };
    this.#bans.set(ip, ban);
    this.#persist();
    this.#arm();
    this.onChange({ kind: 'add', ban });
    return ban;
  }

  /** Returns false when `ip` was not banned. */
  remove(ip: string): boolean {
    if (!this.#bans.delete(ip)) return false;
    this.#persist();
    this.#arm();
    this.onChange({ kind: 'lift', ip, why: 'admin' });
    return true;
  }

  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** One timer, for the earliest expiry. */
  #arm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    let next = Infinity;
    for (const ban of this.#bans.values()) next = Math.min(next, ban.until);
    if (next === Infinity) return;
    this.#timer = setTimeout(() => this.#expire(), Math.min(MAX_TIMER_MS, Math.max(0, next - this.now()) + 5));
    this.#timer.unref();
  }

  #expire(): void {
    const now = this.now();
    const expired = [...this.#bans.values()].filter((ban) => ban.until <= now);
    for (const ban of expired) this.#bans.delete(ban.ip);
    if (expired.length > 0) this.#persist();
    this.#arm();
    for (const ban of expired) this.onChange({ kind: 'lift', ip: ban.ip, why: 'expired' });
  }

  /** Written whole to a temporary file, flushed, then renamed over the old one: never half a list. */
  #persist(): void {
    const body = `${JSON.stringify({ version: FILE_VERSION, bans: this.list() }, null, 1)}\n`;
    try {
      mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      writePrivateFile(this.file, body);
    } catch (error) {
      // The bans still hold in memory and in every worker; only a restart would forget them.
      this.log.error({ err: error, file: this.file }, 'cannot write the ban list');
    }
  }
}
