/**
 * File descriptors the master inherited by accident (a shell's or a parent's
 * open files without close-on-exec) would otherwise leak into every worker.
 * Every descriptor libuv and Node open is O_CLOEXEC, so anything above
 * stdio without that flag was inherited, and is closed here before any
 * worker is spawned.
 */
import { closeSync, readdirSync, readFileSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;

export function closeInheritedFds(keep: ReadonlySet<number> = new Set()): number[] {
  const closed: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc/self/fd');
  } catch {
    return closed;
  }
  for (const entry of entries) {
    const fd = Number(entry);
    if (fd <= 2 || keep.has(fd)) continue;
    let flags: number;
    try {
      const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      const match = /^flags:\s+([0-7]+)$/m.exec(info);
      if (!match) continue;
      flags = parseInt(match[1]!, 8);
    } catch {
      continue; // the directory's own descriptor, already gone
    }
    if ((flags & O_CLOEXEC) !== 0) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // Already closed between the listing and now.
    }
  }
  return closed;
}
