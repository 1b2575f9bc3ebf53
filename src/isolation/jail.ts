/**
 * What a worker's jail contains besides the operator's chroot directory.
 *
 * A dynamically linked node exec'd into an empty chroot fails with a
 * misleading ENOENT: the kernel resolves the ELF interpreter, and ld.so the
 * libraries, inside the new root. The helper therefore builds the jail in a
 * private mount namespace: an overlay on the chroot directory (so mount
 * points can be made without touching the operator's files) and read-only
 * bind mounts of exactly what the worker needs, listed here. Nothing else of
 * the host is visible: not the config file, TLS keys, /etc/shadow or /proc.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { type CompiledConfig, proxyBackends } from '../config/types.js';

/** Name resolution for proxy targets (getaddrinfo reads these). */
const RESOLVER_FILES = ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/host.conf', '/etc/gai.conf'];

let sharedObjects: string[] | null = null;

/** ld.so and every library the node binary links, as the dynamic loader names them. */
export function linkedLibraries(binary: string): string[] {
  if (sharedObjects !== null) return sharedObjects;
  const out = execFileSync('ldd', [binary], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', LANG: 'C' } });
  const found: string[] = [];
  for (const line of out.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const match = /(?:=>\s+)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (match) found.push(match[1]!);
  }
  if (found.length === 0) throw new Error(`ldd found no libraries for ${binary}`);
  sharedObjects = found;
  return found;
}

/**
 * `--bind-ro` arguments for the helper: SRC:DST pairs (DST = SRC here).
 * `dashboard`: the workers serve the security dashboard, whose page lives in share/dashboard.
 */
export function jailBinds(packageRoot: string, nodeBinary: string, dashboard = false): string[] {
  const code = ['package.json', 'dist', 'node_modules', ...(dashboard ? ['share/dashboard'] : [])].map((entry) =>
    path.join(packageRoot, entry),
  );
  const binds = [...linkedLibraries(nodeBinary), ...code];
  if (!nodeBinary.startsWith(path.join(packageRoot, 'node_modules') + path.sep)) binds.push(nodeBinary);
  binds.push(...RESOLVER_FILES.filter((file) => existsSync(file)));
  return binds.map((source) => `${source}:${source}`);
}

/**
 * Directories shared by unrelated programs: a unix: target directly in one
 * is bound into the jail alone, never the directory, whose other sockets
 * (and files) are no business of a worker.
 */
const SHARED_DIRECTORIES: ReadonlySet<string> = new Set([
  '/',
  '/run',
  '/var/run',
  '/run/user',
  '/tmp',
  '/var/tmp',
  '/dev',
  '/dev/shm',
  '/var',
  '/var/lib',
  '/srv',
  '/home',
  '/root',
  '/etc',
  '/opt',
  '/usr',
]);

/**
 * `--bind-ro` arguments that make every unix: proxy target reachable in the
 * jail, at its own path. connect(2) on a unix socket needs write permission
 * on the socket file but not a writable mount (path_permission checks the
 * inode; only regular files, directories and symlinks are refused on a
 * read-only mount), so a read-only bind serves (test/system/upstream-unix.test.ts).
 *
 * A socket in a directory of its own (/run/app/app.sock) gets that
 * directory, so an application that restarts and makes its socket anew is
 * still reached. A socket directly in a shared directory (/run/app.sock) is
 * bound alone: a bind holds the inode, so after the application makes a new
 * socket the workers reach it after the next reload. A socket (or its
 * directory) that does not exist yet is left out: 502 until a reload binds it.
 * Targets inside the operator's chroot need nothing.
 */
export function upstreamSocketBinds(config: CompiledConfig): string[] {
  const binds = new Set<string>();
  for (const { backend } of proxyBackends(config)) {
    for (const target of backend.targets) {
      const socket = target.hostSocketPath;
      if (socket === null || target.socketPath !== socket) continue;
      const dir = path.dirname(socket);
      const source = SHARED_DIRECTORIES.has(dir) ? socket : dir;
      try {
        const stat = statSync(source);
        if (source === dir ? stat.isDirectory() : stat.isSocket()) binds.add(source);
      } catch {
        // Not there yet: see above.
      }
    }
  }
  return [...binds].map((source) => `${source}:${source}`);
}
