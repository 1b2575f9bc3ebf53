/**
 * A uid of its own for every live worker (docs/security.md, "Worker
 * identities"). With one uid per worker, no process of another worker slot
 * or generation — nor any other daemon — shares a worker's uid, so none can
 * signal it, ptrace it or read /proc/<worker>/mem (the kernel's ptrace
 * access check, ptrace(2) "Ptrace access mode checking", needs a matching
 * uid; the helper also makes workers non-dumpable).
 *
 * The uids come from [process.isolation] worker_uid_base .. +WORKER_UID_SPAN-1,
 * a range no account may use (preflight reads /etc/passwd, /etc/subuid).
 * Several masters on one host (several configs, a test suite beside the
 * service) share the range safely: each uid is claimed with an O_EXCL file
 * under CLAIMS_DIR naming the claiming master, and a uid that any process
 * on the host runs as is never handed out. A claim of a master that died
 * is taken over; the worker it named died with it (PR_SET_PDEATHSIG).
 */
import { spawnSync } from 'node:child_process';
import type { CompiledConfig } from '../config/types.js';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';

/** How many uids the range holds. */
export const WORKER_UID_SPAN = 65536;
/** Where claims live: tmpfs, root-only, emptied at boot. */
const CLAIMS_DIR = '/run/miwidothttp-worker-uids';

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The real uids of every process on the host now (from /proc/<pid>/status). */
export function uidsInUse(): Set<number> {
  const uids = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const match = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'));
      if (match) for (const uid of match.slice(1)) uids.add(Number(uid));
    } catch {
      // Exited between the listing and the read.
    }
  }
  return uids;
}

export class WorkerUids {
  readonly #mine = new Set<number>();
  #cursor: number;

  constructor(
    readonly base: number,
    private readonly claimsDir = CLAIMS_DIR,
  ) {
    // Masters starting together begin at different places in the range.
    this.#cursor = Math.floor(Math.random() * WORKER_UID_SPAN);
  }

  /** A uid of the range that no process runs as and no live master holds, claimed until `release`. Throws when none is left. */
  claim(): number {
    mkdirSync(this.claimsDir, { recursive: true, mode: 0o700 });
    const busy = uidsInUse();
    for (let tried = 0; tried < WORKER_UID_SPAN; tried++) {
      const uid = this.base + ((this.#cursor + tried) % WORKER_UID_SPAN);
      if (this.#mine.has(uid) || busy.has(uid) || !this.#take(uid)) continue;
      this.#cursor = (this.#cursor + tried + 1) % WORKER_UID_SPAN;
      this.#mine.add(uid);
      return uid;
    }
    throw new Error(`no free worker uid in ${this.base}-${this.base + WORKER_UID_SPAN - 1}`);
  }

  /** The worker that ran as `uid` is gone: the uid may be handed out again. */
  release(uid: number): void {
    if (!this.#mine.delete(uid)) return;
    const file = path.join(this.claimsDir, String(uid));
    try {
      if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
    } catch {
      // Already gone.
    }
  }

  /** Every uid this master holds (on stop: released as the workers exit). */
  get claimed(): number {
    return this.#mine.size;
  }

  #take(uid: number): boolean {
    const file = path.join(this.claimsDir, String(uid));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o600);
        try {
          writeSync(fd, `${process.pid}\n`);
        } finally {
          closeSync(fd);
        }
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      let holder = Number.NaN;
      try {
        holder = Number(readFileSync(file, 'utf8').trim());
      } catch {
        continue; // released in between: try again
      }
      if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) return false;
      // A claim of a master that is gone (or of this master's earlier life: a pid reused).
      try {
        unlinkSync(file);
      } catch {
        // Someone else took it over first.
      }
    }
    return false;
  }
}

/**
 * Whether an account or a subordinate-id range (/etc/subuid: user
 * namespaces of rootless containers) already uses a uid of the range:
 * the problem, or null.
 */
export function workerUidRangeProblem(base: number, files = { passwd: '/etc/passwd', subuid: '/etc/subuid' }): string | null {
  const last = base + WORKER_UID_SPAN - 1;
  for (const line of readLines(files.passwd)) {
    const [name, , uid] = line.split(':');
    const n = Number(uid);
    if (name && Number.isSafeInteger(n) && n >= base && n <= last)
      return `user ${name} has uid ${n}, inside the workers' uids ${base}-${last}`;
  }
  for (const line of readLines(files.subuid)) {
    const [name, start, count] = line.split(':');
    const from = Number(start);
    const to = from + Number(count) - 1;
    if (name && Number.isSafeInteger(from) && Number.isSafeInteger(to) && from <= last && to >= base)
      return `${files.subuid} gives ${name} uids ${from}-${to}, overlapping the workers' uids ${base}-${last}`;
  }
  return null;
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#'));
  } catch {
    return [];
  }
}

/** The system account whose group workers run in by default (install-system creates it). */
export const DEFAULT_WORKER_ACCOUNT = 'miwidothttp';

/**
 * Creates DEFAULT_WORKER_ACCOUNT as install-system does: a system user with
 * its own group, no home, no login shell. Returns the problem, or null. A
 * master starting at the same moment may create it first: that is success.
 */
export function createWorkerAccount(): string | null {
  const result = spawnSync(
    'useradd',
    ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--user-group', DEFAULT_WORKER_ACCOUNT],
    { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
  );
  if (result.status === 0 || hasGroup(DEFAULT_WORKER_ACCOUNT)) return null;
  return `cannot create the system user ${DEFAULT_WORKER_ACCOUNT}: ${(result.stderr || result.error?.message || `useradd exited with ${result.status}`).trim()}`;
}

/** Whether the group database (files, LDAP: whatever NSS says) knows `group`. */
export function hasGroup(group: string): boolean {
  return spawnSync('getent', ['group', group], { stdio: 'ignore', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }).status === 0;
}

/**
 * At start: the workers' group exists. The default one (the miwidothttp
 * system user's, as install-system makes it) is created when missing; a
 * configured one the preflight has checked. Returns the problem, or null,
 * and whether the account was made.
 */
export function prepareWorkerGroup(config: CompiledConfig): { problem: string | null; created: boolean } {
  const iso = config.isolation;
  // The helper resolves the operator's user and group; the preflight checked run_as_group.
  if (iso.runAsUser !== null || iso.runAsGroup !== null || hasGroup(DEFAULT_WORKER_ACCOUNT)) return { problem: null, created: false };
  const problem = createWorkerAccount();
  return { problem: problem === null ? null : `process.isolation.run_as_user (unset): ${problem}`, created: problem === null };
}
