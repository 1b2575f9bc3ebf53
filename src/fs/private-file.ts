/**
 * Root-only files and directories. Writing a file so that a crash leaves the old file or the new
 * one, never half of one: written whole to a temporary file opened with
 * O_EXCL (never through a link planted at its name), 0600 from its first
 * byte, flushed, renamed over the old one, and the directory flushed.
 */
import { closeSync, fsyncSync, lstatSync, openSync, renameSync, rmSync, type Stats, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

export function writePrivateFile(file: string, body: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    rmSync(temporary, { force: true });
    const fd = openSync(temporary, 'wx', 0o600);
    try {
      writeSync(fd, body);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
    syncDirectory(path.dirname(file));
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/** The same, with asynchronous I/O: the event loop never waits on the disk (the ban list, written in the background). */
export async function writePrivateFileAsync(file: string, body: string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    await rm(temporary, { force: true });
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(body);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
    const dir = await open(path.dirname(file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** Flushes a directory's entries (after a rename in it). */
export function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * cert_dir must be root-only: made 0700 when missing; an existing one that
 * another user owns or others may enter is refused (never chmod-ed: it may
 * be shared with something else). Returns the problem, or null.
 */
export function privateDirectoryProblem(dir: string): string | null {
  let stat: Stats;
  try {
    stat = lstatSync(dir);
  } catch {
    return null; // made when first needed
  }
  if (!stat.isDirectory()) return `${dir} is not a directory`;
  const uid = process.getuid?.() ?? 0;
  if (stat.uid !== uid) return `${dir} belongs to uid ${stat.uid}: it must be root's`;
  if ((stat.mode & 0o077) !== 0) return `${dir} is open to group or others (mode ${(stat.mode & 0o777).toString(8)}): chmod 700 it`;
  return null;
}
