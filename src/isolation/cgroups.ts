/**
 * cgroup bookkeeping on the master's side. The helper creates each worker's
 * cgroup, writes its limits and joins it; the master names it, applies the
 * I/O weight where the kernel has one, and removes it when the worker is
 * gone — including leftovers of a master that died without cleaning up.
 * Works with cgroup v2 and with v1 hierarchies (one mount per controller).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface CgroupMount {
  readonly version: 1 | 2;
  readonly mountPoint: string;
  /** v1: the controllers of this hierarchy; v2: those it offers. */
  readonly controllers: readonly string[];
}

/** cgroup filesystems mounted on this host, from /proc/self/mountinfo. */
export function cgroupMounts(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const mountPoint = left.split(' ')[4];
    const [fsType, , superOptions = ''] = right.split(' ');
    if (mountPoint === undefined) continue;
    if (fsType === 'cgroup2') {
      const controllers = readText(path.join(mountPoint, 'cgroup.controllers')).trim().split(/\s+/).filter(Boolean);
      mounts.push({ version: 2, mountPoint, controllers });
    } else if (fsType === 'cgroup') {
      const controllers = superOptions.split(',').filter((option) => !['rw', 'ro', 'relatime', 'noexec', 'nosuid', 'nodev'].includes(option) && !option.includes('='));
      mounts.push({ version: 1, mountPoint, controllers });
    }
  }
  return mounts;
}

/** A kernel file's text, or "" when it cannot be read. */
export function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Remove one worker's cgroup from every hierarchy. Returns the directories that could not go. */
export function removeCgroup(relativePath: string, mounts = cgroupMounts()): string[] {
  const left: string[] = [];
  for (const mount of mounts) {
    const dir = path.join(mount.mountPoint, relativePath);
    if (!existsSync(dir)) continue;
    try {
      rmdirSync(dir);
    } catch {
      left.push(dir);
    }
  }
  return left;
}

/**
 * Remove worker cgroups under `parent` that no live master owns (named
 * `worker-<masterPid>-<n>`): the leftovers of a master that was killed.
 */
export function removeStaleCgroups(parent: string, isAlive: (pid: number) => boolean, mounts = cgroupMounts()): string[] {
  const removed: string[] = [];
  for (const mount of mounts) {
    const dir = path.join(mount.mountPoint, parent);
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    for (const entry of entries) {
      const match = /^worker-(\d+)-\d+$/.exec(entry);
      if (!match || (Number(match[1]) !== process.pid && isAlive(Number(match[1])))) continue;
      try {
        rmdirSync(path.join(dir, entry));
        removed.push(path.join(dir, entry));
      } catch {
        // Still has a process (a worker of a dead master that has not died yet): next start.
      }
    }
  }
  return removed;
}

/**
 * Apply an I/O weight to a worker's cgroup: io.weight (v2) or blkio.weight
 * (v1). Returns false when the kernel offers neither for this cgroup (this
 * host's v1 blkio has no blkio.weight without the BFQ scheduler).
 */
export function applyIoWeight(relativePath: string, pid: number, weight: number, mounts = cgroupMounts()): boolean {
  for (const mount of mounts) {
    if (mount.version === 2 && mount.controllers.includes('io')) {
      const file = path.join(mount.mountPoint, relativePath, 'io.weight');
      if (existsSync(file)) {
        writeFileSync(file, `default ${weight}\n`);
        return true;
      }
    }
    if (mount.version === 1 && mount.controllers.includes('blkio') && existsSync(path.join(mount.mountPoint, 'blkio.weight'))) {
      const dir = path.join(mount.mountPoint, relativePath);
      // The helper joins memory, cpu and pids; blkio is joined here, by the master.
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'blkio.weight'), String(Math.max(10, Math.min(1000, Math.round(weight / 10)))));
      writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
      return true;
    }
  }
  return false;
}
