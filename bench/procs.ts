/**
 * The processes the benchmark starts: each in its own process group so one
 * signal reaches a server and all its workers, tracked so that every exit
 * path (normal end, error, SIGINT, crash) takes them down, and sampled via
 * /proc so a run can say where the CPU went (master vs workers vs wrk).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** USER_HZ; 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS_PER_SECOND = 100;

export interface Tracked {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  exited: boolean;
}

const tracked: Tracked[] = [];

/** Spawn in a new process group and remember it for cleanup. */
export function startProcess(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Tracked {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options, detached: true });
  if (child.pid === undefined) throw new Error(`${name}: could not spawn ${command}`);
  const entry: Tracked = { name, child, pid: child.pid, exited: false };
  child.on('exit', () => {
    entry.exited = true;
  });
  child.on('error', () => {
    entry.exited = true;
  });
  tracked.push(entry);
  return entry;
}

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  readonly cpuTicks: number;
}

function readStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // comm may contain spaces and parentheses: the fields start after the last ')'.
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const fields = text.slice(close + 2).split(' ');
    // After comm: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    const ppid = Number(fields[1]);
    const cpuTicks = Number(fields[11]) + Number(fields[12]);
    return { pid, ppid, comm, cpuTicks };
  } catch {
    return null;
  }
}

function allStats(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat !== null) stats.push(stat);
  }
  return stats;
}

/** `root` and every live descendant, root first. */
export function processTree(root: number): ProcStat[] {
  const stats = allStats();
  const byParent = new Map<number, ProcStat[]>();
  for (const stat of stats) {
    const siblings = byParent.get(stat.ppid) ?? [];
    siblings.push(stat);
    byParent.set(stat.ppid, siblings);
  }
  const rootStat = stats.find((stat) => stat.pid === root);
  if (rootStat === undefined) return [];
  const tree: ProcStat[] = [rootStat];
  for (let i = 0; i < tree.length; i += 1) tree.push(...(byParent.get((tree[i] as ProcStat).pid) ?? []));
  return tree;
}

export interface CpuSnapshot {
  readonly atMs: number;
  readonly machineTicks: number;
  readonly ticks: Map<number, { comm: string; role: string; ticks: number }>;
}

/** Run a command to completion with a deadline (`input` on its stdin); resolves with its exit code and output. */
export function runCommand(
  command: string,
  args: readonly string[],
  timeoutMs: number,
  input = '',
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    // A command that exits without reading its input must not crash the benchmark.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, output: error.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** CPU ticks of each process in the trees under `roots` (role = the label given to that root). */
export function snapshotCpu(roots: ReadonlyArray<{ pid: number; role: string; withChildren?: boolean }>): CpuSnapshot {
  const ticks = new Map<number, { comm: string; role: string; ticks: number }>();
  for (const { pid, role, withChildren = true } of roots) {
    const processes = withChildren ? processTree(pid) : [readStat(pid)].filter((stat): stat is ProcStat => stat !== null);
    for (const [index, stat] of processes.entries()) {
      if (ticks.has(stat.pid)) continue;
      ticks.set(stat.pid, { comm: stat.comm, role: index === 0 ? role : `${role}/child`, ticks: stat.cpuTicks });
    }
  }
  return { atMs: performance.now(), machineTicks: machineBusyTicks(), ticks };
}

export interface CpuUsage {
  readonly pid: number;
  readonly comm: string;
  readonly role: string;
  /** Percent of one core over the interval. */
  readonly cpuPercent: number;
}

/**
 * Per-process CPU between two snapshots, plus one entry with role "other":
 * what the rest of the machine used meanwhile. Anything well above zero
 * there means the run competed with foreign load and its numbers are noisy.
 */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): CpuUsage[] {
  const seconds = (after.atMs - before.atMs) / 1000;
  const usage: CpuUsage[] = [];
  let ownTicks = 0;
  for (const [pid, now] of after.ticks) {
    const start = before.ticks.get(pid)?.ticks ?? 0;
    const cpuPercent = ((now.ticks - start) / CLOCK_TICKS_PER_SECOND / seconds) * 100;
    ownTicks += now.ticks - start;
    usage.push({ pid, comm: now.comm, role: now.role, cpuPercent: Math.round(cpuPercent) });
  }
  const otherTicks = Math.max(0, after.machineTicks - before.machineTicks - ownTicks);
  usage.push({ pid: 0, comm: '', role: 'other', cpuPercent: Math.round((otherTicks / CLOCK_TICKS_PER_SECOND / seconds) * 100) });
  return usage;
}

function signalTree(entry: Tracked, signal: NodeJS.Signals): void {
  const pids = processTree(entry.pid).map((stat) => stat.pid);
  try {
    process.kill(-entry.pid, signal);
  } catch {
    // The group is gone.
  }
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already exited.
    }
  }
}

function stillRunning(stat: ProcStat): boolean {
  const now = readStat(stat.pid);
  // Same pid and same command: not a recycled pid.
  return now !== null && now.comm === stat.comm;
}

/** SIGTERM the process and its descendants, SIGKILL whatever is left after `graceMs`. */
export async function stopProcess(entry: Tracked, graceMs = 3000): Promise<void> {
  const tree = processTree(entry.pid);
  const alive = (): boolean => (!entry.exited && tree.length > 0) || tree.slice(1).some(stillRunning);
  if (!entry.exited) signalTree(entry, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && alive()) await sleep(50);
  if (!entry.exited) signalTree(entry, 'SIGKILL');
  // Descendants reparented to init after the leader exited.
  for (const stat of tree.slice(1)) {
    if (!stillRunning(stat)) continue;
    try {
      process.kill(stat.pid, 'SIGKILL');
    } catch {
      // Already exited.
    }
  }
  const index = tracked.indexOf(entry);
  if (index >= 0) tracked.splice(index, 1);
}

/** Stop everything still tracked, most recent first. */
export async function stopAll(graceMs = 3000): Promise<void> {
  for (const entry of [...tracked].reverse()) await stopProcess(entry, graceMs);
}

/** Last resort on process exit: synchronous SIGKILL of every tracked group. */
export function killAllSync(): void {
  for (const entry of tracked) {
    for (const stat of processTree(entry.pid)) {
      try {
        process.kill(stat.pid, 'SIGKILL');
      } catch {
        // Already exited.
      }
    }
    try {
      process.kill(-entry.pid, 'SIGKILL');
    } catch {
      // The group is gone.
    }
  }
}

/**
 * Established TCP connections on local `port` held by each descendant of
 * `root` (pid -> count): shows how the kernel spread wrk's
 * connections over the workers. Reads /proc/net/tcp and each fd table.
 */
export function connectionsByProcess(root: number, port: number): Record<number, number> {
  const established = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'latin1');
    } catch {
      continue;
    }
    for (const row of text.split('\n').slice(1)) {
      const fields = row.trim().split(/\s+/);
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const local = fields[1];
      if (local === undefined || fields[3] !== '01') continue;
      if (Number(`0x${local.split(':')[1] ?? 'x'}`) === port && fields[9] !== undefined) established.add(fields[9]);
    }
  }
  const counts: Record<number, number> = {};
  // The root (a master) accepts nothing itself in any of the servers here.
  for (const stat of processTree(root).slice(1)) {
    let count = 0;
    try {
      for (const fd of readdirSync(`/proc/${stat.pid}/fd`)) {
        try {
          const link = readlinkSync(`/proc/${stat.pid}/fd/${fd}`);
          const inode = /^socket:\[([0-9]+)\]$/.exec(link)?.[1];
          if (inode !== undefined && established.has(inode)) count += 1;
        } catch {
          // The fd closed meanwhile.
        }
      }
    } catch {
      continue;
    }
    counts[stat.pid] = count;
  }
  return counts;
}

/**
 * Process time of the whole machine (all CPUs), from /proc/stat. irq and
 * softirq are left out: loopback TCP processing of the benchmark's own
 * traffic lands there, and it is not foreign load.
 */
export function machineBusyTicks(): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal ...
  const [user = 0, nice = 0, system = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return user + nice + system;
}

/** One process's resident memory. */
export interface ProcessMemory {
  readonly pid: number;
  readonly comm: string;
  /** The root of the tree (a master, a primary, a single-process server) or one of its children (workers). */
  readonly role: 'root' | 'child';
  readonly rssBytes: number;
}

/** VmRSS of `pid` in bytes, or null when it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const kib = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1];
    return kib === undefined ? null : Number(kib) * 1024;
  } catch {
    return null;
  }
}

/** Resident memory of `root` and each of its live descendants. */
export function memoryOfTree(root: number): ProcessMemory[] {
  const memory: ProcessMemory[] = [];
  for (const [index, stat] of processTree(root).entries()) {
    const rss = rssBytes(stat.pid);
    if (rss !== null) memory.push({ pid: stat.pid, comm: stat.comm, role: index === 0 ? 'root' : 'child', rssBytes: rss });
  }
  return memory;
}
