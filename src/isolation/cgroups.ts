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
      const controllers = superOptions
        .split(',')
        .filter((option) => !['rw', 'ro', 'relatime', 'noexec', 'nosuid', 'nodev'].includes(option) && !option.includes('='));
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

/** Pure cgroup v2 (one unified hierarchy with every controller): what the helper uses when it finds it. */
export function isPureV2(): boolean {
  return existsSync('/sys/fs/cgroup/cgroup.controllers');
}

/** The leaf the master moves into under a delegated v2 cgroup (no process may live where controllers are enabled). */
const MASTER_LEAF = 'master';

/**
 * The cgroup systemd delegated to this service (Delegate=yes), relative to
 * the hierarchy root ("system.slice/miwidothttp.service"), or null when not
 * started by systemd as a service. systemd sets INVOCATION_ID for every unit
 * it starts; the path is the master's own, read from /proc/self/cgroup: the
 * unified line on pure v2, else the memory hierarchy's (v1 delegates each
 * controller's hierarchy at the same path).
 */
export function delegatedCgroup(
  env: NodeJS.ProcessEnv = process.env,
  procSelfCgroup = readText('/proc/self/cgroup'),
  pureV2 = isPureV2(),
  othersIn: (cgroup: string) => boolean = (cgroup) => hasOtherProcesses(cgroup, pureV2),
): string | null {
  if (env.INVOCATION_ID === undefined || env.INVOCATION_ID === '') return null;
  const lines = procSelfCgroup.split('\n');
  const line = pureV2
    ? lines.find((entry) => entry.startsWith('0::'))
    : lines.find((entry) => /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:/.test(entry));
  if (line === undefined) return null;
  let own = line.split(':').slice(2).join(':').replace(/^\/+/, '');
  // Moved into the leaf already (enterDelegatedLeaf) by this master.
  if (own.endsWith(`/${MASTER_LEAF}`) && own.slice(0, -MASTER_LEAF.length - 1).endsWith('.service'))
    own = own.slice(0, -MASTER_LEAF.length - 1);
  if (!own.endsWith('.service')) return null;
  // INVOCATION_ID is inherited: a master started from a shell inside some
  // other service (a CI runner) must not take that unit's cgroup for its own.
  // The service systemd started us as holds no process but ours.
  return othersIn(own) ? null : own;
}

/** Whether `cgroup` (or the master's leaf in it) holds a process other than this one. */
function hasOtherProcesses(cgroup: string, pureV2: boolean): boolean {
  const mount = pureV2
    ? '/sys/fs/cgroup'
    : cgroupMounts().find((entry) => entry.version === 1 && entry.controllers.includes('memory'))?.mountPoint;
  if (mount === undefined) return true;
  const pids = [cgroup, `${cgroup}/${MASTER_LEAF}`].flatMap((dir) =>
    readText(path.join(mount, dir, 'cgroup.procs'))
      .split('\n')
      .filter(Boolean),
  );
  return pids.some((pid) => Number(pid) !== process.pid);
}

/**
 * On pure v2, moves the master into `<service>/master` so that controllers
 * can be enabled for the worker cgroups beside it ("no internal processes",
 * cgroup-v2.rst); checked by reading /proc/self/cgroup back. v1 hierarchies
 * have no such rule: workers go directly under the service's cgroup.
 * Returns the problem, or null.
 */
export function enterDelegatedLeaf(service: string): string | null {
  if (!isPureV2()) return null;
  const leaf = `${service}/${MASTER_LEAF}`;
  try {
    mkdirSync(path.join('/sys/fs/cgroup', leaf), { recursive: true });
    writeFileSync(path.join('/sys/fs/cgroup', leaf, 'cgroup.procs'), String(process.pid));
  } catch (error) {
    return `cannot move the master into ${leaf}: ${(error as NodeJS.ErrnoException).code ?? String(error)} (is Delegate=yes set?)`;
  }
  const now = readText('/proc/self/cgroup')
    .split('\n')
    .find((entry) => entry.startsWith('0::'));
  return now === `0::/${leaf}` ? null : `the master is not in ${leaf} after moving (${now ?? 'no unified line'})`;
}
