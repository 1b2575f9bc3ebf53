/**
 * How the CLI finds the running master: through `[server].pid_file` and the
 * control socket beside it, read from the config the command names. A config
 * that no longer validates (the operator is mid-edit) still names them, so
 * the two keys are read leniently here, without the schema (which also keeps
 * `status` quick); the master itself validates.
 */
import net from 'node:net';
import path from 'node:path';
import { readConfigFile, resolveConfigPath } from '../config/file.js';
import type { ControlAnswer, ControlRequest } from '../ipc/control.js';
import { runningMaster } from '../master/pid-file.js';

export interface MasterAddress {
  readonly pidFile: string;
  readonly controlSocket: string;
  /** Why the config file could not be read (the defaults were used instead), or null. */
  readonly unreadable: string | null;
}

export function masterAddress(option: string | undefined): MasterAddress {
  const file = resolveConfigPath(option);
  let server: { pid_file?: unknown; control_socket?: unknown } = {};
  // ${VAR} resolved as the master resolved it; an unreadable or unparseable file: the defaults.
  const read = file === null ? null : readConfigFile(file, process.env);
  if (read?.ok === true) server = (read.document as { server?: typeof server }).server ?? {};
  // The schema's defaults, and compile's rule for the socket's place.
  const pidFile = typeof server.pid_file === 'string' ? server.pid_file : '/run/miwidothttp.pid';
  const controlSocket = typeof server.control_socket === 'string' ? server.control_socket : pidFile.replace(/(\.pid)?$/, '.sock');
  return {
    pidFile: path.resolve(pidFile),
    controlSocket: path.resolve(controlSocket),
    unreadable: read?.ok === false ? (read.errors[0] ?? 'cannot be read') : null,
  };
}

/** The running master's pid, or null (the pid file is missing, stale, or names another process). */
export function masterPid(address: MasterAddress): number | null {
  return runningMaster(address.pidFile);
}

/** One request to the master behind `address` (ipc/control.ts), and its answer. */
export async function askMaster<C extends ControlRequest['command']>(
  address: MasterAddress,
  request: Extract<ControlRequest, { command: C }>,
  timeoutMs: number,
): Promise<ControlAnswer<C>> {
  // The master (root, behind a 0600 socket) is trusted to answer from the catalogue.
  return (await controlRequest(address.controlSocket, request, timeoutMs)) as ControlAnswer<C>;
}

/** Why the control socket could not be used, in one line: a non-root user is the usual reason. */
export function controlSocketProblem(address: MasterAddress, error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM')
    return `permission denied on the control socket ${address.controlSocket}: the master is root's; run this as root`;
  if (code === 'ENOENT') return `no control socket at ${address.controlSocket} (is server.control_socket the master's?)`;
  if (code === 'ECONNREFUSED') return `nothing answers on ${address.controlSocket}`;
  return (error as Error).message;
}

/** Exit code of a command that needs the master when none is running (as `status`). */
export const EXIT_NOT_RUNNING = 3;

/**
 * One question to the running master for a command that needs its answer
 * (`ban`, `certs`): the answer when it says ok; otherwise the reason is
 * written on stderr, prefixed by `command`, and the exit code comes back
 * instead (3 not running, 1 no answer or refused).
 */
export async function askRunningMaster<C extends ControlRequest['command']>(
  option: string | undefined,
  command: string,
  request: Extract<ControlRequest, { command: C }>,
  timeoutMs = 10_000,
): Promise<{ answer: Exclude<ControlAnswer<C>, { ok: false }> } | { exitCode: number }> {
  const address = masterAddress(option);
  if (masterPid(address) === null) {
    process.stderr.write(`miwidothttp: not running (no live master in ${address.pidFile})\n`);
    return { exitCode: EXIT_NOT_RUNNING };
  }
  let answer: ControlAnswer<C>;
  try {
    answer = await askMaster(address, request, timeoutMs);
  } catch (error) {
    process.stderr.write(`${command}: ${controlSocketProblem(address, error)}\n`);
    return { exitCode: 1 };
  }
  if (answer.ok !== true) {
    process.stderr.write(`${command}: ${answer.reason ?? 'refused'}\n`);
    return { exitCode: 1 };
  }
  // ok: true: one of the command's answers, not a refusal.
  return { answer: answer as Exclude<ControlAnswer<C>, { ok: false }> };
}

/** The client side of the control socket: send one request line, read one answer line. */
function controlRequest(socketPath: string, request: ControlRequest, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from the master within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(answer));
      } catch {
        reject(new Error('malformed answer from the master'));
      }
    });
  });
}
