/**
 * How a worker process is started: the sandbox helper (native-helpers/)
 * with options derived from `[process.isolation]`, then node, then the
 * worker entry. Policy lives here; the helper only applies what it is told
 * (STYLE.md). `child_process.fork` runs `execPath` with `execArgv` followed
 * by the worker entry, so the helper's options, `--`, node and node's flags
 * all go into execArgv.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CompiledConfig } from '../config/types.js';
import { jailBinds, upstreamSocketBinds } from './jail.js';

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const WORKER_ENTRY = path.join(PACKAGE_ROOT, 'dist/src/worker/main.js');
export const SANDBOX_HELPER = path.join(PACKAGE_ROOT, 'native-helpers/build/miwidothttp-sandbox');

/** Exit codes of the helper (native-helpers/SECURITY.md). */
export const HELPER_EXIT_USAGE = 125;
export const HELPER_EXIT_CANNOT_SANDBOX = 126;
export const HELPER_EXIT_EXEC_FAILED = 127;

/** Share of max_memory given to V8's old space: the rest is code, stacks, buffers. */
const HEAP_SHARE_OF_MEMORY = 0.75;
const MIN_HEAP_MIB = 32;

export interface WorkerCommand {
  readonly execPath: string;
  readonly execArgv: string[];
  readonly env: NodeJS.ProcessEnv;
}

/**
 * The environment a worker gets: nothing of the operator's shell. In
 * particular no NODE_OPTIONS (could preload code), NODE_EXTRA_CA_CERTS,
 * LISTEN_FDS, LISTEN_PID or NOTIFY_SOCKET (systemd's, the master's alone), UV_USE_IO_URING,
 * LD_PRELOAD, or secrets passed to the master in variables. fork() adds the
 * IPC channel's two variables.
 */
export const WORKER_ENV: Readonly<NodeJS.ProcessEnv> = Object.freeze({
  PATH: '/usr/bin:/bin',
  LANG: 'C.UTF-8',
  NODE_ENV: 'production',
});

/** The node flags every worker runs with. */
function nodeFlags(config: CompiledConfig): string[] {
  const flags: string[] = [];
  const memory = config.isolation.maxMemoryBytes;
  // V8 cannot see a cgroup limit from inside the jail; without this it sizes
  // its heap from the host's memory and the worker is OOM-killed instead of
  // collecting garbage.
  if (memory !== null) flags.push(`--max-old-space-size=${Math.max(MIN_HEAP_MIB, Math.floor((memory * HEAP_SHARE_OF_MEMORY) / 1048576))}`);
  return flags;
}

/**
 * The helper's options for one worker. `cgroup` is the worker's own cgroup
 * path (relative to each hierarchy root), or null when cgroups are off.
 * `seccompFile` holds `allowed_syscalls` when the config replaces the
 * built-in list.
 */
export function sandboxOptions(config: CompiledConfig, cgroup: string | null, seccompFile: string | null): string[] {
  const iso = config.isolation;
  const options = ['--run-as-user', iso.runAsUser];
  if (iso.runAsGroup !== null) options.push('--run-as-group', iso.runAsGroup);
  if (iso.chroot !== null) {
    options.push('--chroot', iso.chroot, '--working-dir', iso.workingDir);
    for (const bind of [...jailBinds(PACKAGE_ROOT, nodeBinary(), config.server.dashboard !== null), ...upstreamSocketBinds(config)])
      options.push('--bind-ro', bind);
  }
  options.push('--max-open-files', String(iso.maxOpenFiles));
  if (cgroup !== null) {
    options.push('--cgroup', cgroup);
    if (iso.maxMemoryBytes !== null) options.push('--max-memory', String(iso.maxMemoryBytes));
    if (iso.maxCpuPercent !== null) options.push('--max-cpu-percent', String(iso.maxCpuPercent));
    if (iso.maxPids !== null) options.push('--max-pids', String(iso.maxPids));
  }
  if (iso.apparmorProfile !== null) options.push('--apparmor-profile', iso.apparmorProfile);
  if (iso.seccomp === 'off') options.push('--seccomp=off');
  else {
    options.push(`--seccomp=${seccompFile ?? 'default'}`, '--seccomp-action', iso.seccomp);
    // Transitional (issue 12): the master still sends bound, not-listening
    // handles over IPC, and the worker's listen() must run for them. Remove
    // once the master passes listening sockets as inherited fds (--keep-fd,
    // or --listen-fd): then no worker can open a listening port of its own.
    options.push('--unsafe-allow-listen');
  }
  return options;
}

/** The node binary as a real path: the jail binds files, not symlinks. The master's own, fixed for its life. */
const NODE_BINARY = realpathSync(process.execPath);

export function nodeBinary(): string {
  return NODE_BINARY;
}

export function workerCommand(config: CompiledConfig, cgroup: string | null, seccompFile: string | null): WorkerCommand {
  return {
    execPath: SANDBOX_HELPER,
    execArgv: [...sandboxOptions(config, cgroup, seccompFile), '--', nodeBinary(), ...nodeFlags(config)],
    env: { ...WORKER_ENV },
  };
}
