/**
 * What the kernel says about a worker, read by the master from /proc and the
 * cgroup files (never asked of the worker, which could lie): its uids,
 * seccomp mode, no_new_privs, effective capabilities, root directory and
 * the limits of its cgroup. cgroup v1 hierarchies (one mount per
 * controller) and v2 (one unified hierarchy) alike.
 *
 * Sources: proc(5) for /proc/PID/status (Uid, Gid, NoNewPrivs, Seccomp,
 * CapEff), /proc/PID/root and /proc/PID/cgroup; cgroup-v1 memory.txt,
 * sched-bwc.rst and pids.txt; cgroup-v2.rst for memory.max, cpu.max, pids.max.
 */
import { readlinkSync } from 'node:fs';
import path from 'node:path';
import { cgroupMounts, readText, type CgroupMount } from '../../isolation/cgroups.js';

export type SeccompMode = 'off' | 'strict' | 'filter';

export interface CgroupLimits {
  readonly version: 1 | 2;
  /** The process's cgroup (the memory controller's on v1), relative to the hierarchy root. */
  readonly path: string;
  /** null: no limit. */
  readonly memoryMaxBytes: number | null;
  /** CPU quota in percent of one CPU; null: no quota. */
  readonly cpuMaxPercent: number | null;
  readonly pidsMax: number | null;
}

export interface ProcessFacts {
  readonly pid: number;
  /** Real and effective uid; null when the process is gone. */
  readonly uid: number | null;
  readonly euid: number | null;
  readonly gid: number | null;
  readonly seccomp: SeccompMode | null;
  readonly noNewPrivs: boolean | null;
  /** CapEff as the kernel prints it (hex); "0000000000000000" is none. */
  readonly capEffective: string | null;
  /** Where /proc/PID/root points: the jail, or "/". */
  readonly root: string | null;
  readonly cgroup: CgroupLimits | null;
}

export interface ProcStatus {
  readonly uid: number | null;
  readonly euid: number | null;
  readonly gid: number | null;
  readonly seccomp: SeccompMode | null;
  readonly noNewPrivs: boolean | null;
  readonly capEffective: string | null;
}

const SECCOMP_MODES: Record<string, SeccompMode> = { '0': 'off', '1': 'strict', '2': 'filter' };

/** The fields of /proc/PID/status this page shows. */
export function parseProcStatus(text: string): ProcStatus {
  const field = (name: string): string | null => {
    const match = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text);
    return match === null ? null : match[1]!.trim();
  };
  const ids = (name: string): number[] => (field(name) ?? '').split(/\s+/).filter(Boolean).map(Number);
  const uids = ids('Uid');
  const gids = ids('Gid');
  const seccomp = field('Seccomp');
  const noNewPrivs = field('NoNewPrivs');
  return {
    uid: uids[0] ?? null,
    euid: uids[1] ?? null,
    gid: gids[0] ?? null,
    seccomp: seccomp === null ? null : (SECCOMP_MODES[seccomp] ?? null),
    noNewPrivs: noNewPrivs === null ? null : noNewPrivs === '1',
    capEffective: field('CapEff'),
  };
}

/** cgroup v1 prints "no limit" as the largest page-aligned count (9223372036854771712 on 4 KiB pages). */
const V1_UNLIMITED_BYTES = 2 ** 62;

/** A limit file's number, or null for "max", -1, a huge v1 value or an unreadable file. */
function limitOf(text: string): number | null {
  const value = text.trim();
  if (!/^[0-9]+$/.test(value)) return null;
  const number = Number(value);
  return number >= V1_UNLIMITED_BYTES ? null : number;
}

/** cgroup v2 cpu.max ("max 100000" or "50000 100000"), v1 quota and period: percent of one CPU. */
function cpuPercent(quota: string, period: string): number | null {
  const q = limitOf(quota);
  const p = limitOf(period);
  return q === null || p === null || p === 0 ? null : Math.round((q / p) * 1000) / 10;
}

/**
 * The limits of the cgroup a process is in, from its /proc/PID/cgroup text.
 * v1 lines name their controllers ("4:memory:/path"); the v2 line is "0::/path".
 * v1 controllers are preferred where both exist (a hybrid host's unified
 * hierarchy holds no controller).
 */
export function cgroupLimits(
  procCgroup: string,
  mounts: readonly CgroupMount[],
  read: (file: string) => string = readText,
): CgroupLimits | null {
  const v1Paths = new Map<string, string>();
  let unified: string | null = null;
  for (const line of procCgroup.split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (match === null) continue;
    if (match[1] === '0' && match[2] === '') unified = match[3]!;
    else for (const controller of match[2]!.split(',')) v1Paths.set(controller, match[3]!);
  }
  const v1File = (controller: string, file: string): string => {
    const at = v1Paths.get(controller);
    const mount = mounts.find((entry) => entry.version === 1 && entry.controllers.includes(controller));
    return at === undefined || mount === undefined ? '' : read(path.join(mount.mountPoint, at, file));
  };
  if (v1Paths.has('memory') || v1Paths.has('pids') || v1Paths.has('cpu')) {
    return {
      version: 1,
      path: (v1Paths.get('memory') ?? v1Paths.get('pids') ?? v1Paths.get('cpu')!).replace(/^\/+/, ''),
      memoryMaxBytes: limitOf(v1File('memory', 'memory.limit_in_bytes')),
      cpuMaxPercent: cpuPercent(v1File('cpu', 'cpu.cfs_quota_us'), v1File('cpu', 'cpu.cfs_period_us')),
      pidsMax: limitOf(v1File('pids', 'pids.max')),
    };
  }
  const mount = mounts.find((entry) => entry.version === 2);
  if (unified === null || mount === undefined) return null;
  const file = (name: string): string => read(path.join(mount.mountPoint, unified, name));
  const [quota = '', period = ''] = file('cpu.max').trim().split(/\s+/);
  return {
    version: 2,
    path: unified.replace(/^\/+/, ''),
    memoryMaxBytes: limitOf(file('memory.max')),
    cpuMaxPercent: cpuPercent(quota, period),
    pidsMax: limitOf(file('pids.max')),
  };
}

/** Everything above for one process; fields are null where the process is gone or the kernel does not say. */
export function inspectProcess(pid: number, mounts: readonly CgroupMount[] = cgroupMounts()): ProcessFacts {
  const status = parseProcStatus(readText(`/proc/${pid}/status`));
  let root: string | null = null;
  try {
    root = readlinkSync(`/proc/${pid}/root`);
  } catch {
    // Gone, or not ours to read.
  }
  const procCgroup = readText(`/proc/${pid}/cgroup`);
  return { pid, ...status, root, cgroup: procCgroup === '' ? null : cgroupLimits(procCgroup, mounts) };
}
