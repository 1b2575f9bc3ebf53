/**
 * Preflight checks of [process.isolation]: can every protection the config
 * asks for be applied here? One that cannot stops `start` (and fails
 * `check`, and refuses a reload) with one line naming the key; it is never
 * silently skipped. The sandbox helper checks the same things again when it
 * applies them.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { cgroupMounts, readText } from '../../isolation/cgroups.js';
import { SANDBOX_HELPER } from '../../isolation/worker-command.js';
import { hasGroup, workerUidRangeProblem } from '../../isolation/worker-uids.js';
import type { ConfigProblem } from '../problem.js';
import type { CompiledConfig } from '../types.js';

/** Every worker starts through the C helper (native-helpers/). */
export function sandboxHelperBuilt(): ConfigProblem[] {
  try {
    accessSync(SANDBOX_HELPER, constants.X_OK);
    return [];
  } catch {
    return [
      {
        key: 'process.isolation',
        message: `the sandbox helper ${SANDBOX_HELPER} is not built: run npm ci (needs gcc, make, libseccomp-dev)`,
      },
    ];
  }
}

/** Dropping workers to another user, jailing and limiting them take root. */
export function masterIsRoot(config: CompiledConfig): ConfigProblem[] {
  if (process.getuid?.() === 0) return [];
  return [
    {
      key: 'process.isolation.run_as_user',
      message: `dropping workers to ${config.isolation.runAsUser === null ? 'uids of their own' : `"${config.isolation.runAsUser}"`} needs root; start miwidothttp as root`,
    },
  ];
}

export function chrootIsDirectory(config: CompiledConfig): ConfigProblem[] {
  const { chroot } = config.isolation;
  if (chroot === null) return [];
  let isDirectory = false;
  try {
    isDirectory = statSync(chroot).isDirectory();
  } catch {
    // reported below
  }
  return isDirectory ? [] : [{ key: 'process.isolation.chroot', message: `${chroot} is not a directory` }];
}

export function apparmorEnabled(config: CompiledConfig): ConfigProblem[] {
  if (config.isolation.apparmorProfile === null || readText('/sys/module/apparmor/parameters/enabled').trim() === 'Y') return [];
  return [{ key: 'process.isolation.enable_apparmor', message: 'AppArmor is not enabled on this kernel' }];
}

/** The cgroup controllers the configured limits need are mounted. */
export function cgroupControllers(config: CompiledConfig): ConfigProblem[] {
  const iso = config.isolation;
  if (iso.cgroupParent === null) return [];
  const offered = new Set(cgroupMounts().flatMap((mount) => mount.controllers));
  const wanted: [string, boolean][] = [
    ['memory', iso.maxMemoryBytes !== null],
    ['cpu', iso.maxCpuPercent !== null],
    ['pids', iso.maxPids !== null],
  ];
  return wanted
    .filter(([controller, needed]) => needed && !offered.has(controller))
    .map(([controller]) => ({
      key: 'process.isolation.enable_cgroups',
      message: `the ${controller} cgroup controller is not available on this host`,
    }));
}

/** Without run_as_user each worker gets a uid of the range: no account may already hold one (docs/security.md). */
export function workerUidRangeFree(config: CompiledConfig): ConfigProblem[] {
  const iso = config.isolation;
  if (iso.runAsUser !== null) return [];
  const taken = workerUidRangeProblem(iso.workerUidBase);
  return taken === null ? [] : [{ key: 'process.isolation.worker_uid_base', message: `${taken}; choose another worker_uid_base` }];
}

/** A configured run_as_group exists (the default one, miwidothttp's, is created by start when missing). */
export function workerGroupExists(config: CompiledConfig): ConfigProblem[] {
  const { runAsUser, runAsGroup } = config.isolation;
  if (runAsUser !== null || runAsGroup === null || hasGroup(runAsGroup)) return [];
  return [{ key: 'process.isolation.run_as_group', message: `no group "${runAsGroup}"` }];
}
