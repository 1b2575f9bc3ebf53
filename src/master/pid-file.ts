/**
 * The pid file names the running master. A live one refuses a second start;
 * a stale one (its process is gone, or is a zombie, or is not a miwidothttp
 * master) is replaced.
 */
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';

export function readPidFile(pidFile: string): number | null {
  try {
    const text = readFileSync(pidFile, 'utf8').trim();
    return /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/** Alive and not a zombie: `kill -0` alone succeeds on a zombie. */
export function isProcessAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The pid of a running master named by the pid file, or null. */
export function runningMaster(pidFile: string): number | null {
  const pid = readPidFile(pidFile);
  if (pid === null || pid === process.pid || !isProcessAlive(pid)) return null;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('miwidothttp') || cmdline.includes('cli/main.js') ? pid : null;
  } catch {
    return null;
  }
}

export function writePidFile(pidFile: string): void {
  const temporary = `${pidFile}.${process.pid}.tmp`;
  writeFileSync(temporary, `${process.pid}\n`, { mode: 0o644 });
  renameSync(temporary, pidFile);
}

export function removePidFile(pidFile: string): void {
  if (readPidFile(pidFile) !== process.pid) return;
  try {
    unlinkSync(pidFile);
  } catch {
    // Already gone.
  }
}
