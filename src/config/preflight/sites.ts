/**
 * Preflight checks of the sites: what the host must hold for every vhost
 * and route to serve (a root that is a directory, an htpasswd file the
 * master can read, with bcrypt lines only). (Names claimed twice are
 * refused by compile: see compile-checks.ts.)
 */
import { statSync } from 'node:fs';
import { htpasswdFiles, readHtpasswd } from '../htpasswd.js';
import type { ConfigProblem } from '../problem.js';
import type { CompiledConfig } from '../types.js';

/**
 * A route's own root that is missing or not a directory. (A vhost's root may
 * be made after `check`, as the reference config's is; a route's own is
 * usually a typo.)
 */
export function routeRootsExist(config: CompiledConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  config.vhosts.forEach((vhost, i) => {
    const sites = vhost.routes.map((route, j) => ({ key: `vhosts[${i}].routes[${j}]`, site: route }));
    for (const { key, site } of sites) {
      if (site.hostRoot === null || site.hostRoot === vhost.hostRoot || seen.has(site.hostRoot)) continue;
      if (site.backend.type !== 'static' && Object.keys(site.errorPages).length === 0) continue;
      seen.add(site.hostRoot);
      let directory = false;
      try {
        directory = statSync(site.hostRoot).isDirectory();
      } catch {
        directory = false;
      }
      if (!directory) problems.push({ key: `${key}.root`, message: `${site.hostRoot} is not a directory` });
    }
  });
  return problems;
}

/** An htpasswd file that cannot be read, or holds a line the server would not accept. */
export function htpasswdReadable(config: CompiledConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const file of htpasswdFiles(config)) {
    const read = readHtpasswd(file);
    if (!read.ok) problems.push({ key: keyOfHtpasswd(config, file), message: read.reason });
  }
  return problems;
}

function keyOfHtpasswd(config: CompiledConfig, file: string): string {
  for (const [i, vhost] of config.vhosts.entries()) {
    if (vhost.auth?.htpasswdFile === file) return `vhosts[${i}].auth.htpasswd`;
    const j = vhost.routes.findIndex((route) => route.auth?.htpasswdFile === file);
    if (j !== -1) return `vhosts[${i}].routes[${j}].auth.htpasswd`;
  }
  return 'auth.htpasswd';
}
