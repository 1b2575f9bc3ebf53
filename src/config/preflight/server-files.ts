/**
 * Preflight checks of the files the master owns while it runs: the pid file
 * (written at start, removed at stop), the control socket (an existing
 * socket there is unlinked first) and the log files it appends to as root.
 * Whatever else lives at those paths would be overwritten, deleted or
 * written through: a config that points them at someone's file
 * ("/etc/passwd", a directory, a link) is refused before anything is touched.
 */
import { accessSync, constants, lstatSync, readFileSync, type Stats, statfsSync } from 'node:fs';
import path from 'node:path';
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

/** statfs f_type of kernel file systems that hold no files of ours (linux/magic.h). */
const KERNEL_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, '/proc'],
  [0x62656572, 'sysfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x1cd1, 'devpts'],
  [0x64626720, 'debugfs'],
  [0x73636673, 'securityfs'],
  [0x74726163, 'tracefs'],
]);

/** The problem with appending to `file` as the master, or null. */
function logFileProblem(file: string): string | null {
  const stat = existing(file);
  if (stat !== null) {
    if (stat.isSymbolicLink()) return `${file} is a symbolic link: the master (root) would write wherever it points`;
    if (stat.isDirectory()) return `${file} is a directory`;
    if (!stat.isFile()) return `${file} is not a regular file`;
  }
  // The nearest directory that exists: the file (and missing parents) are made there.
  let dir = path.dirname(file);
  while (existing(dir) === null && dir !== path.dirname(dir)) dir = path.dirname(dir);
  const dirStat = existing(dir);
  if (dirStat === null || !dirStat.isDirectory()) return `${dir} is not a directory`;
  try {
    const kernel = KERNEL_FILE_SYSTEMS.get(statfsSync(dir).type);
    if (kernel !== undefined) return `${dir} lies on ${kernel}, where no log file can be made`;
  } catch {
    // statfs unavailable: the write itself will say
  }
  try {
    accessSync(stat === null ? dir : file, constants.W_OK);
  } catch (error) {
    return `${stat === null ? dir : file}: cannot write: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
  // Others who may write the directory could swap the file for a link between two writes (unless sticky, as /tmp).
  if (stat !== null || dir === path.dirname(file)) {
    if ((dirStat.mode & 0o022) !== 0 && (dirStat.mode & 0o1000) === 0)
      return `its directory ${dir} is writable by group or others: they could swap the file for a link to any file the master writes`;
  }
  return null;
}

/** server.log_file and security.audit.log_file can be appended to, and are nobody's link or directory. */
export function logFilesWritable(config: CompiledConfig): ConfigProblem[] {
  const files: [string, string | null][] = [
    ['server.log_file', config.server.logFile],
    ['security.audit.log_file', config.audit.enabled ? config.audit.logFile : null],
  ];
  return files.flatMap(([key, file]) => {
    const problem = file === null ? null : logFileProblem(file);
    return problem === null ? [] : [{ key, message: problem }];
  });
}
