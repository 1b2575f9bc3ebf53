/**
 * Preflight checks of the files the master owns while it runs: the pid file
 * (written at start, removed at stop) and the control socket (an existing
 * socket there is unlinked first). Whatever else lives at those paths would
 * be overwritten or deleted: a config that points them at someone's file
 * ("/etc/passwd", a directory, a link) is refused before anything is touched.
 */
import { lstatSync, readFileSync, type Stats } from 'node:fs';
import type { ConfigProblem } from '../problem.js';
import type { CompiledConfig } from '../types.js';

/** A pid file is a pid and a newline: anything longer is not one. */
const MAX_PID_FILE_BYTES = 32;

function existing(file: string): Stats | null {
  try {
    return lstatSync(file);
  } catch {
    return null;
  }
}

/** pid_file is absent, or a regular file holding a pid (ours, or a stale one). */
export function pidFileIsOurs(config: CompiledConfig): ConfigProblem[] {
  const file = config.server.pidFile;
  const stat = existing(file);
  if (stat === null) return [];
  const refuse = (what: string): ConfigProblem[] => [
    { key: 'server.pid_file', message: `${file} ${what}: start would overwrite it and stop delete it` },
  ];
  if (stat.isSymbolicLink()) return refuse('is a symbolic link');
  if (!stat.isFile()) return refuse('is not a regular file');
  if (stat.size > MAX_PID_FILE_BYTES) return refuse(`is not a pid file (${stat.size} bytes)`);
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return [{ key: 'server.pid_file', message: `${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}` }];
  }
  return /^[1-9][0-9]{0,9}\n?$/.test(text) ? [] : refuse('is not a pid file');
}

/** control_socket is absent, or a socket (a previous master's). */
export function controlSocketIsOurs(config: CompiledConfig): ConfigProblem[] {
  const file = config.server.controlSocket;
  const stat = existing(file);
  if (stat === null || stat.isSocket()) return [];
  return [
    {
      key: 'server.control_socket',
      message: `${file} exists and is not a socket: start would delete it to make its own`,
    },
  ];
}
