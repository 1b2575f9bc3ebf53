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
 *
 * A config without [process.isolation] chroot still gets a jail: an empty
 * directory the master makes (state_dir/jail), with each static root bound
 * in read-only at its own path, so the vhosts' roots need no translation and
 * nothing else of the host is there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
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

/** The jail of a config without a chroot: an empty directory in state_dir. */
export function implicitJail(config: CompiledConfig): string {
  return path.join(config.server.stateDir, 'jail');
}

/**
 * Makes the implicit jail (mode 0755: the workers' uids must traverse it;
 * state_dir stays 0700, which the chroot never walks). Returns the problem,
 * or null. It must be a directory of root's and empty: whatever lies in it
 * would be in every worker's jail.
 */
export function makeImplicitJail(dir: string): string | null {
  try {
    mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 });
    mkdirSync(dir, { mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
      return `cannot make the workers' jail ${dir}: ${(error as NodeJS.ErrnoException).code}`;
  }
  const stat = lstatSync(dir);
  if (!stat.isDirectory() || stat.uid !== 0) return `the workers' jail ${dir} must be a directory of root's`;
  const entries = readdirSync(dir);
  if (entries.length > 0) return `the workers' jail ${dir} must be empty (it holds ${entries.slice(0, 3).join(', ')})`;
  return null;
}

/** `--bind-ro` arguments for the static roots (vhosts' and routes') of a config without a chroot: each at its own path, those that exist. */
export function rootBinds(config: CompiledConfig): string[] {
  if (config.isolation.chroot !== null) return [];
  const roots = new Set<string>();
  // A route's own root (and the error pages below it) is read like its vhost's.
  for (const site of config.vhosts.flatMap((vhost) => [vhost, ...vhost.routes])) {
    if (site.hostRoot === null || roots.has(site.hostRoot)) continue;
    try {
      if (statSync(site.hostRoot).isDirectory()) roots.add(site.hostRoot);
    } catch {
      // Missing: served as 404 until it exists and a reload binds it.
    }
  }
  return [...roots].map((root) => `${root}:${root}`);
}

/**
 * `--bind-ro` arguments that make every unix: proxy target reachable in the
 * jail, at its own path. connect(2) on a unix socket needs write permission
 * on the socket file but not a writable mount (path_permission checks the
 * inode; only regular files, directories and symlinks are refused on a
 * read-only mount), so a read-only bind serves (test/system/upstream-options.test.ts).
 *
 * What is bound is the target's jailBind (config/compile-backend.ts): a
 * socket in a directory of its own (/run/app/app.sock) gets that
 * directory, so an application that restarts and makes its socket anew is
 * still reached. A socket directly in a shared directory (/run/app.sock) is
 * bound alone: a bind holds the inode, so after the application makes a new
 * socket the workers reach it after the next reload. A socket (or its
 * directory) that does not exist yet is left out: 502 until a reload binds it.
 */
export function upstreamSocketBinds(config: CompiledConfig): string[] {
  const binds = new Set<string>();
  for (const { backend } of proxyBackends(config)) {
    for (const target of backend.targets) {
      const bind = target.jailBind;
      if (bind === null) continue;
      const there = bind.hostPath === target.hostSocketPath ? isSocket(bind.hostPath) : isDirectory(bind.hostPath);
      if (there) binds.add(`${bind.hostPath}:${bind.jailPath}`);
    }
  }
  return [...binds];
}

const isSocket = (file: string): boolean => {
  try {
    return statSync(file).isSocket();
  } catch {
    return false; // not there yet: see above
  }
};

const isDirectory = (dir: string): boolean => {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
};
