/**
 * Who a worker will be: the uid, primary gid and supplementary groups
 * `process.isolation.run_as_user` / `run_as_group` resolve to, looked up the
 * way the sandbox helper looks them up (getpwnam, getgrnam and initgroups,
 * through NSS: `getent` and `id` are their command-line faces). A number is
 * used as given, without a lookup, as the helper does.
 */
import { spawnSync } from 'node:child_process';
import type { IsolationSpec } from '../types.js';

export interface WorkerIdentity {
  readonly uid: number;
  readonly gid: number;
  /** Every group the worker is in: the primary one and the supplementary ones. */
  readonly groups: readonly number[];
}

const NUMERIC = /^[0-9]{1,10}$/;

function command(file: string, args: readonly string[]): string | null {
  const result = spawnSync(file, args, { encoding: 'utf8', timeout: 10_000 });
  return result.status === 0 ? result.stdout.trim() : null;
}

/** The identity, or the one line saying why there is none ("no such user"). */
export function workerIdentity(isolation: IsolationSpec): WorkerIdentity | { problem: string; key: string } {
  const user = isolation.runAsUser;
  let uid: number;
  let gid: number | null = null;
  let groups: number[] = [];
  if (NUMERIC.test(user)) {
    uid = Number(user);
  } else {
    const entry = command('getent', ['passwd', user]);
    if (entry === null) return { key: 'process.isolation.run_as_user', problem: `no such user: ${JSON.stringify(user)}` };
    const fields = entry.split('\n')[0]!.split(':');
    uid = Number(fields[2]);
    gid = Number(fields[3]);
    const listed = command('id', ['-G', '--', user]);
    groups =
      listed === null
        ? []
        : listed
            .split(/\s+/)
            .filter((text) => NUMERIC.test(text))
            .map(Number);
  }
  const group = isolation.runAsGroup;
  if (group !== null) {
    if (NUMERIC.test(group)) gid = Number(group);
    else {
      const entry = command('getent', ['group', group]);
      if (entry === null) return { key: 'process.isolation.run_as_group', problem: `no such group: ${JSON.stringify(group)}` };
      gid = Number(entry.split('\n')[0]!.split(':')[2]);
    }
  }
  if (gid === null) return { key: 'process.isolation.run_as_group', problem: `run_as_user ${user} is a number: set run_as_group too` };
  return { uid, gid, groups: [...new Set([gid, ...groups])] };
}
