/**
 * How a worker process is started: the sandbox helper (native-helpers/)
 * with options derived from `[process.isolation]`, then node, then the
 * worker entry. Policy lives here; the helper only applies what it is
 * told. The master spawns the helper with the worker's channel at fd 3
 * and its listening sockets after it (src/master/worker-process.ts); the
 * helper keeps exactly those open across exec (`--keep-fd`).
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CompiledConfig } from '../config/types.js';
import { ACCESS_LOG_FD } from '../ipc/access-log.js';
import { implicitJail, jailBinds, rootBinds, upstreamSocketBinds } from './jail.js';
import { DEFAULT_WORKER_ACCOUNT } from './worker-uids.js';

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
  /** The sandbox helper. */
  readonly file: string;
  /** Its options, `--`, node, node's flags and the worker entry. */
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
}

/** The descriptor of the worker's channel to the master (an AF_UNIX socketpair end). */
export const CHANNEL_FD = 3;
/** The first listening socket's fd: after the channel and the access log pipe's fd (src/ipc/access-log.ts), kept free when unused. */
export const FIRST_LISTENER_FD = ACCESS_LOG_FD + 1;

/** What one worker gets besides the config: who it runs as, where its cgroup is, what it inherits. */
export interface WorkerSandbox {
  /** Its own cgroup (relative path), or null when cgroups are off. */
  readonly cgroup: string | null;
  /** allowed_syscalls as a file, or null for the built-in list. */
  readonly seccompFile: string | null;
  /** A uid of its own (a number, src/isolation/worker-uids.ts), or the operator's run_as_user. */
  readonly user: string;
  /** The group: a name, or null for the user's own. */
  readonly group: string | null;
  /** Descriptors kept across exec: the channel. */
  readonly keepFds: readonly number[];
  /** The listening sockets, kept and checked to listen. */
  readonly listenFds: readonly number[];
}

/**
 * The environment a worker gets: nothing of the operator's shell. In
 * particular no NODE_OPTIONS (could preload code), NODE_EXTRA_CA_CERTS,
 * LISTEN_FDS, LISTEN_PID or NOTIFY_SOCKET (systemd's, the master's alone), UV_USE_IO_URING,
 * LD_PRELOAD, NODE_CHANNEL_FD (no Node IPC channel), or secrets passed to the
 * master in variables.
 */
export const WORKER_ENV: Readonly<NodeJS.ProcessEnv> = Object.freeze({
  PATH: '/usr/bin:/bin',
  LANG: 'C.UTF-8',
  NODE_ENV: 'production',
});

/**
 * V8 flags every worker runs with, whatever the config. Allocation-site
 * pretenuring off: with it V8 may decide, per process and from what
 * survives one collection, to allocate what a literal makes straight in
 * the old generation, and keeps that decision. With it a worker that
 * served static files, idled, then proxied stayed slow for its whole life
 * in a third of the processes (every request's objects outlived
 * scavenges, ~10 µs more CPU per proxied request, p99 three times as
 * long); without it in none (docs/benchmark.md, "One process slow for its
 * whole life").
 */
export const WORKER_V8_FLAGS: readonly string[] = Object.freeze(['--no-allocation-site-pretenuring']);

/** The node flags every worker runs with. */
function nodeFlags(config: CompiledConfig): string[] {
  const flags = [...WORKER_V8_FLAGS];
  const memory = config.isolation.maxMemoryBytes;
  // V8 cannot see a cgroup limit from inside the jail; without this it sizes
  // its heap from the host's memory and the worker is OOM-killed instead of
  // collecting garbage.
  if (memory !== null) flags.push(`--max-old-space-size=${Math.max(MIN_HEAP_MIB, Math.floor((memory * HEAP_SHARE_OF_MEMORY) / 1048576))}`);
  return flags;
}

/**
 * The helper's options for one worker. Every worker is jailed: in
 * [process.isolation] chroot, or else in the empty jail the master made
 * (state_dir/jail) with the static roots bound in.
 */
export function sandboxOptions(config: CompiledConfig, sandbox: WorkerSandbox): string[] {
  const iso = config.isolation;
  const options = ['--run-as-user', sandbox.user];
  if (sandbox.group !== null) options.push('--run-as-group', sandbox.group);
  options.push('--chroot', iso.chroot ?? implicitJail(config), '--working-dir', iso.workingDir);
  for (const bind of [
    ...jailBinds(PACKAGE_ROOT, nodeBinary(), config.server.dashboard !== null),
    ...rootBinds(config),
    ...upstreamSocketBinds(config),
  ])
    options.push('--bind-ro', bind);
  options.push('--max-open-files', String(iso.maxOpenFiles));
  if (sandbox.cgroup !== null) {
    options.push('--cgroup', sandbox.cgroup);
    if (iso.maxMemoryBytes !== null) options.push('--max-memory', String(iso.maxMemoryBytes));
    if (iso.maxCpuPercent !== null) options.push('--max-cpu-percent', String(iso.maxCpuPercent));
    if (iso.maxPids !== null) options.push('--max-pids', String(iso.maxPids));
  }
  if (iso.apparmorProfile !== null) options.push('--apparmor-profile', iso.apparmorProfile);
  if (iso.seccomp === 'off') options.push('--seccomp=off');
  else options.push(`--seccomp=${sandbox.seccompFile ?? 'default'}`, '--seccomp-action', iso.seccomp);
  for (const fd of sandbox.keepFds) options.push('--keep-fd', String(fd));
  // The listening sockets: the helper makes each listen again before its filter (which then answers a
  // worker's listen with 0 without running it) and reads SO_ACCEPTCONN back. They already listen (the
  // master made them); again, it restores one a worker may have stopped listening for everyone.
  for (const fd of sandbox.listenFds) options.push('--listen-fd', String(fd));
  return options;
}

/** The node binary as a real path: the jail binds files, not symlinks. The master's own, fixed for its life. */
const NODE_BINARY = realpathSync(process.execPath);

export function nodeBinary(): string {
  return NODE_BINARY;
}

export function workerCommand(config: CompiledConfig, sandbox: WorkerSandbox): WorkerCommand {
  return {
    file: SANDBOX_HELPER,
    args: [...sandboxOptions(config, sandbox), '--', nodeBinary(), ...nodeFlags(config), WORKER_ENTRY],
    env: { ...WORKER_ENV },
  };
}

/**
 * Who a worker runs as: the operator's run_as_user (and group) exactly, or
 * else `uid`, the worker's own, in run_as_group or the miwidothttp account's
 * group (so group-readable site files stay readable).
 */
export function workerIdentity(config: CompiledConfig, uid: number | null): { user: string; group: string | null } {
  const iso = config.isolation;
  if (iso.runAsUser !== null) return { user: iso.runAsUser, group: iso.runAsGroup };
  if (uid === null) throw new Error('a worker without run_as_user needs a uid of its own');
  return { user: String(uid), group: iso.runAsGroup ?? DEFAULT_WORKER_ACCOUNT };
}
