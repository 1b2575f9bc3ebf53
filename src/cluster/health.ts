/**
 * Does this node see an etcd quorum? Asked every HEALTH_INTERVAL_MS.
 *
 * Without a quorum etcd does not fail calls, it lets them hang: a
 * linearizable read waits for a leader that cannot be elected, and a watch
 * stays open and silent. So a round is
 *   - a linearizable read with a deadline of `healthTimeoutMs` (about twice
 *     the election timeout: a healthy cluster answers in one heartbeat,
 *     a leader election takes up to two election timeouts), and
 *   - the status of every member, with the same deadline: at least
 *     `quorum_size` members must answer and know a leader.
 * Both must pass. A round that fails is reported at once; the caller
 * decides what it means (read-only, rejoin).
 */
import type { Etcd3 } from 'etcd3';
import type { ClusterSpec } from '../config/types.js';
import { etcdProblem, KEYS, type EtcdConnection } from './etcd.js';

export const HEALTH_INTERVAL_MS = 250;

export interface MemberHealth {
  readonly endpoint: string;
  readonly answered: boolean;
  readonly leader: string | null;
  readonly problem: string | null;
}

export interface HealthRound {
  readonly quorum: boolean;
  /** Why the quorum is not seen, one line; null with quorum. */
  readonly problem: string | null;
  readonly members: readonly MemberHealth[];
  readonly at: number;
}

function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

async function memberHealth(endpoint: string, client: Etcd3, deadlineMs: number): Promise<MemberHealth> {
  try {
    const status = await withDeadline(client.maintenance.status({ deadline: Date.now() + deadlineMs }), deadlineMs + 100, endpoint);
    const leader = status.leader === '0' ? null : status.leader;
    return { endpoint, answered: true, leader, problem: leader === null ? 'knows no leader' : null };
  } catch (error) {
    return { endpoint, answered: false, leader: null, problem: etcdProblem(error) };
  }
}

export async function healthRound(connection: EtcdConnection, spec: ClusterSpec): Promise<HealthRound> {
  const deadlineMs = spec.healthTimeoutMs;
  const read = withDeadline(
    connection.keys
      .get(KEYS.verifier)
      .options({ deadline: Date.now() + deadlineMs })
      .exec()
      .then(() => null),
    deadlineMs + 100,
    'linearizable read',
  ).catch((error: unknown) => `a linearizable read failed: ${etcdProblem(error)}`);
  const [readProblem, members] = await Promise.all([
    read,
    Promise.all(connection.perEndpoint.map(({ endpoint, client }) => memberHealth(endpoint, client, deadlineMs))),
  ]);
  const withLeader = members.filter((member) => member.leader !== null).length;
  let problem = readProblem;
  if (problem === null && withLeader < spec.quorumSize)
    problem = `${withLeader} of ${members.length} etcd members answer with a leader; quorum_size is ${spec.quorumSize}`;
  return { quorum: problem === null, problem, members, at: Date.now() };
}
