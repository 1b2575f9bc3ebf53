/**
 * Before the first worker: can every protection the config asks for be
 * applied here? A protection that cannot be applied stops the start with one
 * line naming the key; it is never silently skipped. The helper checks the
 * same things again when it applies them.
 */
import { accessSync, constants, statSync } from 'node:fs';
import type { CompiledConfig } from '../config/types.js';
import { cgroupMounts, readText } from './cgroups.js';
import { SANDBOX_HELPER } from './worker-command.js';
import { createWorkerAccount, DEFAULT_WORKER_ACCOUNT, hasGroup, workerUidRangeProblem } from './worker-uids.js';

export function sandboxPreflight(config: CompiledConfig): string | null {
  const iso = config.isolation;
  try {
    accessSync(SANDBOX_HELPER, constants.X_OK);
  } catch {
    return `the sandbox helper ${SANDBOX_HELPER} is not built: run npm ci (needs gcc, make, libseccomp-dev)`;
  }
  if (process.getuid?.() !== 0) {
    return `process.isolation.run_as_user: dropping workers to ${iso.runAsUser === null ? 'uids of their own' : `"${iso.runAsUser}"`} needs root; start miwidothttp as root`;
  }
  if (iso.runAsUser === null) {
    const taken = workerUidRangeProblem(iso.workerUidBase);
    if (taken !== null) return `process.isolation.worker_uid_base: ${taken}; choose another worker_uid_base`;
  }
  if (iso.chroot !== null) {
    let isDirectory = false;
    try {
      isDirectory = statSync(iso.chroot).isDirectory();
    } catch {
      // reported below
    }
    if (!isDirectory) return `process.isolation.chroot: ${iso.chroot} is not a directory`;
  }
  if (iso.apparmorProfile !== null && readText('/sys/module/apparmor/parameters/enabled').trim() !== 'Y') {
    return 'process.isolation.enable_apparmor: AppArmor is not enabled on this kernel';
  }
  if (iso.cgroupParent !== null) {
    const mounts = cgroupMounts();
    const offered = new Set(mounts.flatMap((mount) => mount.controllers));
    const wanted: [string, boolean][] = [
      ['memory', iso.maxMemoryBytes !== null],
      ['cpu', iso.maxCpuPercent !== null],
      ['pids', iso.maxPids !== null],
    ];
    for (const [controller, needed] of wanted) {
      if (needed && !offered.has(controller)) {
        return `process.isolation.enable_cgroups: the ${controller} cgroup controller is not available on this host`;
      }
    }
  }
  return null;
}

/**
 * The workers' group exists: the configured one must; the default one (the
 * miwidothttp system user's, as install-system makes it) is created when
 * missing. Returns the problem, or null, and whether the account was made.
 */
export function prepareWorkerGroup(config: CompiledConfig): { problem: string | null; created: boolean } {
  const iso = config.isolation;
  if (iso.runAsUser !== null) return { problem: null, created: false }; // the helper resolves the operator's user and group
  if (iso.runAsGroup !== null) {
    return hasGroup(iso.runAsGroup)
      ? { problem: null, created: false }
      : { problem: `process.isolation.run_as_group: no group "${iso.runAsGroup}"`, created: false };
  }
  if (hasGroup(DEFAULT_WORKER_ACCOUNT)) return { problem: null, created: false };
  const problem = createWorkerAccount();
  return { problem: problem === null ? null : `process.isolation.run_as_user (unset): ${problem}`, created: problem === null };
}
