/**
 * The preflight: a compiled config held against this host, by `check`,
 * `start` and `reload` alike (config/load.ts runs it), so that what `check`
 * passes, `start` does not refuse, and a reload that could not be applied is
 * refused before a worker is replaced (Caddy's Validate is its start path run
 * without starting). Compile is pure; every look at the host is here: the
 * facts compile needs (host.ts) and the checks below.
 *
 * A check is one small function of the compiled config that returns its
 * problems, `key.path: what is wrong`, printed like any other config problem.
 * Adding one is adding it to PREFLIGHT_CHECKS.
 */
import type { ConfigProblem } from '../problem.js';
import type { CompiledConfig } from '../types.js';
import {
  apparmorEnabled,
  cgroupControllers,
  chrootIsDirectory,
  masterIsRoot,
  sandboxHelperBuilt,
  workerGroupExists,
  workerUidRangeFree,
} from './isolation.js';
import { htpasswdReadable, routeRootsExist } from './sites.js';
import { controlSocketIsOurs, logFilesWritable, pidFileIsOurs } from './server-files.js';
import { manualCertificates, privateCertDir, privateKeyFiles, rootOwnedDnsProgram } from './tls.js';
import { sandboxHelperAccepts, siteRootsReadable, workerMemory, workerUser } from './workers.js';
import { upstreamTlsFiles } from '../upstream-tls.js';
import { clusterIdentity } from './cluster.js';

/**
 * Which command runs the preflight. The checks so far hold the same for all
 * three; a check of something a running master owns (its pid file, its
 * control socket) tells `reload` from `check` and `start` by it.
 */
export type PreflightPurpose = 'check' | 'start' | 'reload';

export type PreflightCheck = (config: CompiledConfig, purpose: PreflightPurpose) => readonly ConfigProblem[];

/** Every host probe, in the order their problems are listed. */
export const PREFLIGHT_CHECKS: readonly PreflightCheck[] = [
  // [server]
  pidFileIsOurs,
  controlSocketIsOurs,
  logFilesWritable,
  // [ssl]
  manualCertificates,
  privateKeyFiles,
  privateCertDir,
  rootOwnedDnsProgram,
  // proxy backends: ca_file, client_cert_file, client_key_file
  upstreamTlsFiles,
  // [process.isolation]
  sandboxHelperBuilt,
  masterIsRoot,
  workerUser,
  workerMemory,
  chrootIsDirectory,
  apparmorEnabled,
  cgroupControllers,
  workerUidRangeFree,
  workerGroupExists,
  // [[vhosts]]
  siteRootsReadable,
  // [cluster]
  clusterIdentity,
  // [[vhosts]] routes
  routeRootsExist,
  htpasswdReadable,
  // Last: the helper re-validates much of the above, and says only what they did not.
  sandboxHelperAccepts,
];

/**
 * Every problem the host has with `config`; none: it can be applied here.
 * The sandbox helper's verdict on a key another check already named is left
 * out: it would be the same problem said twice.
 */
export function preflight(config: CompiledConfig, purpose: PreflightPurpose): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const check of PREFLIGHT_CHECKS) {
    const named = new Set(problems.map((problem) => problem.key));
    for (const problem of check(config, purpose)) {
      if (check === sandboxHelperAccepts && (named.has(problem.key) || problems.some((p) => p.key.startsWith('process.isolation'))))
        continue;
      problems.push(problem);
    }
  }
  return problems;
}
