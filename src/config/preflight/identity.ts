/**
 * Who a worker will be: the uid, primary gid and supplementary groups it
 * runs with, looked up the way the sandbox helper looks them up (getpwnam,
 * getgrnam and initgroups, through NSS: `getent` and `id` are their
 * command-line faces). A number is used as given, without a lookup, as the
 * helper does. Without run_as_user each worker gets a uid of its own from
 * worker_uid_base, in run_as_group or the miwidothttp account's group
 * (src/isolation/worker-command.ts): the first uid of the range stands for
 * them all, none of which owns a file.
 */
import { spawnSync } from 'node:child_process';
import { DEFAULT_WORKER_ACCOUNT } from '../../isolation/worker-uids.js';
import type { IsolationSpec } from '../types.js';

export interface WorkerIdentity {
  readonly uid: number;
  /** Null: a group start makes (the miwidothttp account's) and no file belongs to yet. */
  readonly gid: number | null;
  /** Every group the worker is in: the primary one and the supplementary ones. */
  readonly groups: readonly number[];
  /** How a message names the workers: "nobody (uid 65534)", or "the workers' own uids (2000000000 on)". */
  readonly described: string;
}

const NUMERIC = /^[0-9]{1,10}$/;

function command(file: string, args: readonly string[]): string | null {
  const result = spawnSync(file, args, { encoding: 'utf8', timeout: 10_000 });
  return result.status === 0 ? result.stdout.trim() : null;
}

function groupId(group: string): number | null {
  if (NUMERIC.test(group)) return Number(group);
  const entry = command('getent', ['group', group]);
  return entry === null ? null : Number(entry.split('\n')[0]!.split(':')[2]);
}

/** The identity, or the one line saying why there is none ("no such user"). */
export function workerIdentity(isolation: IsolationSpec): WorkerIdentity | { problem: string; key: string } {
  const user = isolation.runAsUser;
  if (user === null) {
    // A missing default group is made at start; a configured one must exist (workerGroupExists says so).
    const gid = groupId(isolation.runAsGroup ?? DEFAULT_WORKER_ACCOUNT);
    return {
      uid: isolation.workerUidBase,
      gid,
      groups: gid === null ? [] : [gid],
      described: `the workers' own uids (${isolation.workerUidBase} on)`,
    };
  }
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
  if (isolation.runAsGroup !== null) {
    gid = groupId(isolation.runAsGroup);
    if (gid === null) return { key: 'process.isolation.run_as_group', problem: `no such group: ${JSON.stringify(isolation.runAsGroup)}` };
  }
  if (gid === null) return { key: 'process.isolation.run_as_group', problem: `run_as_user ${user} is a number: set run_as_group too` };
  return { uid, gid, groups: [...new Set([gid, ...groups])], described: `${user} (uid ${uid})` };
}
