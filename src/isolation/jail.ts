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
import { existsSync } from 'node:fs';
import path from 'node:path';

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
