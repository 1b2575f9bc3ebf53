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
import { duplicateDomains, htpasswdReadable, routeRootsExist } from './sites.js';
import { manualCertificates, privateCertDir, rootOwnedDnsProgram } from './tls.js';
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
  // [ssl]
  manualCertificates,
  privateCertDir,
  rootOwnedDnsProgram,
  // proxy backends: ca_file, client_cert_file, client_key_file
  upstreamTlsFiles,
  // [process.isolation]
  sandboxHelperBuilt,
  masterIsRoot,
  chrootIsDirectory,
  apparmorEnabled,
  cgroupControllers,
  workerUidRangeFree,
  workerGroupExists,
  // [cluster]
  clusterIdentity,
  // [[vhosts]] and their routes
  routeRootsExist,
  htpasswdReadable,
  duplicateDomains,
];

/** Every problem the host has with `config`; none: it can be applied here. */
export function preflight(config: CompiledConfig, purpose: PreflightPurpose): ConfigProblem[] {
  return PREFLIGHT_CHECKS.flatMap((check) => check(config, purpose));
}
