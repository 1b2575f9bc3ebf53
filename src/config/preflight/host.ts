/**
 * What the host contributes to a compiled config, probed once before
 * compiling so that compile itself stays pure (compile.ts).
 */
import { availableParallelism, hostname } from 'node:os';
import { delegatedCgroup } from '../../isolation/cgroups.js';

export interface HostFacts {
  /** Relative paths in the config start here: where the command runs. */
  readonly cwd: string;
  /** Workers started for `workers = 0`. */
  readonly cpuCount: number;
  /** The cgroup systemd delegated to the service, the parent of worker cgroups when cgroup_parent is unset. */
  readonly delegatedCgroup: string | null;
  /** The default [cluster] node_name. */
  readonly hostname?: string;
}

export function probeHost(): HostFacts {
  return { cwd: process.cwd(), cpuCount: availableParallelism(), delegatedCgroup: delegatedCgroup(), hostname: hostname() };
}
