/**
 * The operator's cluster commands on a member: `cluster status`, `admit`,
 * `remove`. Status reads with a deadline, and serializably (from whichever
 * member answers, possibly behind) when the quorum is gone: it must answer
 * during a split, which is when it is needed most.
 */
import type { Namespace } from 'etcd3';
import type { ClusterSpec } from '../config/types.js';
import type { AuditLog } from '../master/audit-log.js';
import type { ConfigResult } from './config-sync.js';
import type { ClusterStatus, NodeView } from '../ipc/control.js';
import { etcdProblem, KEYS } from './etcd.js';
import type { MemberHealth } from './health.js';
import type { ManagedMember } from './managed-etcd.js';
import { admit, readMembership, removeMember } from './membership.js';

const STATUS_DEADLINE_MS = 1_500;
const source = { role: 'master', pid: process.pid } as const;

export interface StatusInputs {
  readonly keys: Namespace;
  readonly spec: ClusterSpec;
  readonly stale: boolean;
  readonly readOnly: { reason: string; since: number } | null;
  readonly quorum: boolean;
  readonly appliedRevision: string | null;
  readonly latestRevision: string | null;
  readonly members: readonly MemberHealth[];
}

export async function clusterStatus(inputs: StatusInputs): Promise<ClusterStatus> {
  const { keys, spec } = inputs;
  const options = { deadline: Date.now() + STATUS_DEADLINE_MS };
  const read = (prefix: string) => keys.getAll().prefix(prefix).serializable(inputs.stale).options(options).strings();
  let nodes: NodeView[] = [];
  let stale = inputs.stale;
  try {
    const [live, results, membershipText] = await Promise.all([
      read(KEYS.nodes),
      read(KEYS.configResults),
      keys.get(KEYS.membership).serializable(inputs.stale).options(options).string(),
    ]);
    const admitted = Object.keys((JSON.parse(membershipText ?? '{}') as { members?: Record<string, unknown> }).members ?? {});
    const names = new Set([...admitted, ...Object.keys(live).map((key) => key.slice(KEYS.nodes.length))]);
    nodes = [...names].sort().map((name) => {
      const text = results[KEYS.configResult(name)];
      const result = text === undefined ? null : (JSON.parse(text) as ConfigResult);
      return {
        name,
        alive: live[KEYS.node(name)] !== undefined,
        admitted: admitted.includes(name),
        config_revision: name === spec.nodeName ? inputs.appliedRevision : (result?.running ?? null),
        last_reload: result?.at ?? null,
        last_reload_ok: result?.ok ?? null,
        last_reload_error: result?.ok === false ? result.reason : null,
      };
    });
  } catch {
    // No member answers at all: what this node knows of itself.
    stale = true;
    nodes = [
      {
        name: spec.nodeName,
        alive: true,
        admitted: true,
        config_revision: inputs.appliedRevision,
        last_reload: null,
        last_reload_ok: null,
        last_reload_error: null,
      },
    ];
  }
  return {
    ok: true,
    node: spec.nodeName,
    read_only: inputs.readOnly !== null,
    quorum: inputs.quorum,
    read_only_reason: inputs.readOnly?.reason ?? null,
    read_only_since: inputs.readOnly === null ? null : new Date(inputs.readOnly.since).toISOString(),
    config_revision: inputs.appliedRevision,
    cluster_config_revision: inputs.latestRevision,
    stale,
    nodes,
    etcd: inputs.members.map(({ endpoint, answered, leader }) => ({ endpoint, answered, leader })),
  };
}

export async function admitNode(
  keys: Namespace,
  name: string,
  spec: ClusterSpec,
  audit: AuditLog,
): Promise<{ ok: true; detail: string } | { ok: false; reason: string }> {
  try {
    const admission = await admit(keys, name, '', spec.nodeName, spec.maxNodes);
    if (!admission.ok) return { ok: false, reason: admission.reason };
    audit.write('admin', { event: 'cluster.admit', host: name }, source, { already: admission.already });
    return { ok: true, detail: admission.already ? `${name} was already admitted` : `${name} admitted` };
  } catch (error) {
    return { ok: false, reason: etcdProblem(error) };
  }
}

/** Frees a place; a live node must be stopped first (it would keep writing as a member). */
export async function removeNode(
  keys: Namespace,
  name: string,
  spec: ClusterSpec,
  audit: AuditLog,
  managed: ManagedMember | null,
): Promise<{ ok: true; detail: string } | { ok: false; reason: string }> {
  try {
    if ((await keys.get(KEYS.node(name)).string()) !== null)
      return { ok: false, reason: `${name} is alive: stop it first, then remove it` };
    const membership = await readMembership(keys);
    if (membership.members[name] === undefined) return { ok: false, reason: `${name} is not a member` };
    if (name === spec.nodeName) return { ok: false, reason: 'a node cannot remove itself' };
    await managed?.removeMember(name);
    await removeMember(keys, name);
    await keys.delete().key(KEYS.configResult(name)).exec();
    audit.write('admin', { event: 'cluster.remove', host: name }, source);
    return { ok: true, detail: `${name} removed` };
  } catch (error) {
    return { ok: false, reason: etcdProblem(error) };
  }
}
