/**
 * Preflight checks of what the workers will be and see: the user they run
 * as, the memory they get, the site roots they serve (read as that user
 * would, inside the jail), and the sandbox helper's own verdict on the
 * options a worker gets (`miwidothttp-sandbox --check`: every validation of
 * a real run, nothing created, mounted or run).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, type Stats, statSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { implicitJail } from '../../isolation/jail.js';
import {
  nodeBinary,
  SANDBOX_HELPER,
  sandboxOptions,
  workerIdentity as workerSandboxIdentity,
  type WorkerSandbox,
} from '../../isolation/worker-command.js';
import { DEFAULT_WORKER_ACCOUNT, hasGroup } from '../../isolation/worker-uids.js';
import { formatSize } from '../size.js';
import type { ConfigProblem } from '../problem.js';
import type { CompiledConfig } from '../types.js';
import { workerIdentity, type WorkerIdentity } from './identity.js';

/** Below this a worker (node and its heap) cannot start, or is OOM-killed serving its first requests. */
export const MIN_WORKER_MEMORY_BYTES = 64 * 1024 ** 2;

/** A run_as_user (and run_as_group) that exists and is not root; without one, workerUidRangeFree and workerGroupExists speak. */
export function workerUser(config: CompiledConfig): ConfigProblem[] {
  if (config.isolation.runAsUser === null) return [];
  const identity = workerIdentity(config.isolation);
  if ('problem' in identity) return [{ key: identity.key, message: identity.problem }];
  if (identity.uid === 0) {
    return [
      {
        key: 'process.isolation.run_as_user',
        message: `${config.isolation.runAsUser} is uid 0 (root): workers would keep every privilege the sandbox exists to take away`,
      },
    ];
  }
  if (identity.gid === 0) return [{ key: 'process.isolation.run_as_group', message: 'gid 0 (root): workers would keep root group access' }];
  return [];
}

/** max_memory is room for a worker, and no more than this host has. */
export function workerMemory(config: CompiledConfig): ConfigProblem[] {
  const bytes = config.isolation.maxMemoryBytes;
  if (bytes === null) return [];
  if (bytes < MIN_WORKER_MEMORY_BYTES) {
    return [
      {
        key: 'process.isolation.max_memory',
        message: `${formatSize(bytes)} is less than a worker needs (${formatSize(MIN_WORKER_MEMORY_BYTES)}): it would be killed as it starts`,
      },
    ];
  }
  const host = totalmem();
  if (bytes > host) {
    return [
      {
        key: 'process.isolation.max_memory',
        message: `${formatSize(bytes)} is more than this host's memory (${formatSize(host)}): no limit at all, and V8's heap sized past what exists`,
      },
    ];
  }
  return [];
}

/** May `who` do `bits` (4 read, 1 search/execute) on a file with `stat`? Classic owner/group/other; ACLs are not read. */
function permits(stat: Stats, who: WorkerIdentity, bits: number): boolean {
  if (stat.uid === who.uid) return ((stat.mode >> 6) & bits) === bits;
  if (who.groups.includes(stat.gid)) return ((stat.mode >> 3) & bits) === bits;
  return (stat.mode & bits) === bits;
}

const describe = (stat: Stats): string =>
  `mode ${(stat.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${stat.uid} gid ${stat.gid}`;

/**
 * Every vhost root exists, is a directory, and the workers can list it and
 * reach it: read and search on the root itself, and, in an operator's jail
 * (chroot), search on each directory from the jail's root down (a worker
 * sees nothing above it). Without a chroot each root is bound into the
 * workers' jail at its own path, below directories the jail makes: the root
 * alone counts. Otherwise every request for the site is a 404 or a 403 with
 * nothing said at start.
 */
export function siteRootsReadable(config: CompiledConfig): ConfigProblem[] {
  const roots = config.vhosts.flatMap((vhost, i) => (vhost.hostRoot === null ? [] : [[i, vhost.hostRoot] as const]));
  if (roots.length === 0) return [];
  const identity = workerIdentity(config.isolation);
  const problems: ConfigProblem[] = [];
  for (const [i, root] of roots) {
    const key = `vhosts[${i}].root`;
    const top = config.isolation.chroot ?? root;
    const relative = path.relative(top, root);
    if (relative.startsWith('..')) continue; // outside the jail: compile's problem
    let stat: Stats;
    try {
      stat = statSync(root);
    } catch (error) {
      problems.push({
        key,
        message: `${root}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (error as Error).message}`,
      });
      continue;
    }
    if (!stat.isDirectory()) {
      problems.push({ key, message: `${root} is not a directory` });
      continue;
    }
    if ('problem' in identity || identity.uid === 0) continue; // said by workerUser
    const who = identity.described;
    let dir = top;
    const steps = relative === '' ? [] : relative.split(path.sep);
    let blocked: string | null = null;
    for (const step of ['', ...steps.slice(0, -1)]) {
      dir = path.join(dir, step);
      const above = statSync(dir);
      if (!permits(above, identity, 1)) {
        blocked = `${who} cannot enter ${dir} (${describe(above)})`;
        break;
      }
    }
    if (blocked === null && !permits(stat, identity, 5)) blocked = `${who} cannot list ${root} (${describe(stat)})`;
    if (blocked !== null) problems.push({ key, message: `${root} cannot be served: ${blocked}` });
  }
  return problems;
}

/** The helper's option -> the config key it comes from. */
const OPTION_KEYS: Readonly<Record<string, string>> = {
  '--run-as-user': 'process.isolation.run_as_user',
  '--run-as-group': 'process.isolation.run_as_group',
  '--chroot': 'process.isolation.chroot',
  '--bind-ro': 'process.isolation.chroot',
  '--working-dir': 'process.isolation.working_dir',
  '--max-memory': 'process.isolation.max_memory',
  '--max-cpu-percent': 'process.isolation.max_cpu_percent',
  '--max-pids': 'process.isolation.max_pids',
  '--max-open-files': 'process.isolation.max_open_files',
  '--cgroup': 'process.isolation.cgroup_parent',
  '--seccomp': 'process.isolation.allowed_syscalls',
  '--seccomp-action': 'process.isolation.seccomp_default_action',
  '--apparmor-profile': 'process.isolation.apparmor_profile',
};

/**
 * The sandbox helper, asked with `--check` about exactly the options a
 * worker of this config gets: what it would refuse at spawn is said now,
 * as a problem of the key the option comes from. Needs root (as the workers
 * do; masterIsRoot says so otherwise) and the helper (sandboxHelperBuilt).
 */
export function sandboxHelperAccepts(config: CompiledConfig): ConfigProblem[] {
  if (process.getuid?.() !== 0) return [];
  // What start makes before the first worker (the workers' own jail, the miwidothttp group) cannot be asked about yet.
  if (config.isolation.chroot === null && !existsSync(implicitJail(config))) return [];
  if (config.isolation.runAsUser === null && config.isolation.runAsGroup === null && !hasGroup(DEFAULT_WORKER_ACCOUNT)) return [];
  const parent = config.isolation.cgroupParent;
  let seccompDir: string | null = null;
  try {
    let seccompFile: string | null = null;
    if (config.isolation.allowedSyscalls !== null) {
      seccompDir = mkdtempSync(path.join(tmpdir(), 'miwidothttp-preflight-'));
      seccompFile = path.join(seccompDir, 'seccomp.list');
      writeFileSync(seccompFile, `${config.isolation.allowedSyscalls.join('\n')}\n`, { mode: 0o600 });
    }
    const sandbox: WorkerSandbox = {
      cgroup: parent === null ? null : `${parent}/worker-preflight`,
      seccompFile,
      ...workerSandboxIdentity(config, config.isolation.runAsUser === null ? config.isolation.workerUidBase : null),
      keepFds: [],
      listenFds: [],
    };
    const options = sandboxOptions(config, sandbox);
    const result = spawnSync(SANDBOX_HELPER, ['--check', ...options, '--', nodeBinary()], { encoding: 'utf8', timeout: 30_000 });
    if (result.error !== undefined) return []; // not runnable: sandboxHelperBuilt says so
    if (result.status === 0) return [];
    const line = (result.stderr || result.stdout).trim().split('\n')[0] ?? '';
    const said = line.replace(/^miwidothttp-sandbox: /, '');
    const option = /^(--[a-z-]+)/.exec(said)?.[1];
    return [
      {
        key: (option && OPTION_KEYS[option]) ?? 'process.isolation',
        message: `the sandbox helper refuses it: ${said || `exit ${result.status}`}`,
      },
    ];
  } finally {
    if (seccompDir !== null) rmSync(seccompDir, { recursive: true, force: true });
  }
}
