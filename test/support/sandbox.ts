/**
 * Running the sandbox helper (native-helpers/build/miwidothttp-sandbox)
 * directly, the way the master does: a jail with node (or the C probe) and
 * its libraries bound in, an unprivileged uid, the built-in seccomp filter.
 * Shared by the helper's own tests and the escape tests.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const NATIVE = path.join(ROOT, 'native-helpers');
export const HELPER = path.join(NATIVE, 'build/miwidothttp-sandbox');
/** Dynamically linked, like node (native-helpers/tests/probe.c). */
export const PROBE = path.join(NATIVE, 'build/tests/probe');
/** Binds a listening socket at fd 3 and execs its arguments (native-helpers/tests/listener.c). */
export const LISTENER = path.join(NATIVE, 'build/tests/listener');
/** A static program: the helper refuses it (no shim can be preloaded into it). */
export const STATIC_PROGRAM = path.join(NATIVE, 'build/tests/notify-listen');
export const NODE = path.join(ROOT, 'node_modules/node/bin/node');
export const isRoot = process.getuid?.() === 0;
export const needsRoot = isRoot ? false : 'needs root (the helper changes uid, mounts and cgroups)';
/** Every failure of the helper is exactly one line. */
export const LINE = /^miwidothttp-sandbox: [^\n]+\n$/;

export interface Result {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function buildNativeHelpers(): void {
  const make = spawnSync('make', ['-C', NATIVE, 'all', 'test-programs'], { encoding: 'utf8' });
  assert.equal(make.status, 0, `make -C native-helpers failed:\n${make.stdout}${make.stderr}`);
}

export function runHelper(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Result {
  const result = spawnSync(HELPER, args, {
    encoding: 'utf8',
    timeout: 60_000,
    input: options.input ?? '',
    env: options.env ?? { PATH: '/usr/bin:/bin' },
  });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

const cleanups: (() => void)[] = [];

/** Undo what jailDir() and others made; call from after(). */
export function cleanUp(): void {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
}

export function onCleanUp(cleanup: () => void): void {
  cleanups.push(cleanup);
}

/** An empty directory to use as the jail root (root's, 0755, as the helper requires). */
export function jailDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'miwidothttp-jail-'));
  chmodSync(dir, 0o755);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** --bind-ro options for a program's loader and libraries, at their host paths. */
export function libraryBinds(binary: string): string[] {
  const ldd = spawnSync('ldd', [binary], { encoding: 'utf8' });
  assert.equal(ldd.status, 0, ldd.stderr);
  const binds: string[] = [];
  for (const line of ldd.stdout.split('\n')) {
    const lib = /=>\s+(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
    if (lib !== undefined) binds.push('--bind-ro', lib);
  }
  return binds;
}

/** --bind-ro options for node at /node, its loader and its libraries (what the master passes). */
export function nodeBinds(): string[] {
  return ['--bind-ro', `${NODE}:/node`, ...libraryBinds(NODE)];
}

export function probeBinds(): string[] {
  return ['--bind-ro', `${PROBE}:/probe`, ...libraryBinds(PROBE)];
}

/** The user options: a name, or a numeric uid and gid (no passwd entry needed). */
export type Identity = string[];
export const NOBODY: Identity = ['--run-as-user', 'nobody'];
export function numericIdentity(id: number): Identity {
  return ['--run-as-user', String(id), '--run-as-group', String(id)];
}

/** Options for a jailed node: `extra` goes before "--". */
export function jailedNode(jail: string, script: string, extra: string[] = [], identity: Identity = NOBODY): string[] {
  return [...identity, '--chroot', jail, ...nodeBinds(), ...extra, '--', '/node', '-e', script];
}

export function jailedProbe(jail: string, action: string[], extra: string[] = [], identity: Identity = NOBODY): string[] {
  return [...identity, '--chroot', jail, ...probeBinds(), ...extra, '--', '/probe', ...action];
}

/** A jailed node that prints "ready", echoes stdin lines as "echo:<line>", and exits when stdin closes. */
export const WAIT_SCRIPT =
  'process.stdout.write("ready\\n"); process.stdin.on("data", (d) => process.stdout.write("echo:" + d)); process.stdin.on("end", () => process.exit(0));';

export type Waiting = ChildProcess & { output: () => string };

/** Spawn `command` (the helper by default) and wait until its output contains `marker`. */
export async function startWaiting(
  args: string[],
  options: { command?: string; marker?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Waiting> {
  const child = spawn(options.command ?? HELPER, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? { PATH: '/usr/bin:/bin' } });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const marker = options.marker ?? 'ready';
  const until = Date.now() + 30_000;
  while (!out.includes(marker)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited ${child.exitCode ?? child.signalCode}: ${out}`);
    if (Date.now() > until) {
      child.kill('SIGKILL'); // or it holds the test process open
      throw new Error(`no "${marker}" within 30 s: ${out}`);
    }
    await sleep(20);
  }
  return Object.assign(child, { output: () => out });
}

/** Close stdin and wait for the exit code. */
export async function finish(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stdin?.end();
  return exited;
}

export function statusField(pid: number, field: string): string {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const line = status.split('\n').find((l) => l.startsWith(`${field}:`));
  assert.ok(line !== undefined, `no ${field} in /proc/${pid}/status`);
  return line.slice(field.length + 1).trim();
}

/** The one-letter state of a process (R, S, T for stopped, Z, ...), or null when it is gone. */
export function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}
