/**
 * Getting into the cluster (the joining node) and letting others in (the
 * JoinDesk every member runs). See membership.ts for what is checked.
 *
 * The joining node:
 *   - a new cluster (no verifier, no membership): it founds it, in one
 *     transaction that only succeeds while both keys are still absent;
 *   - otherwise it publishes its join request and waits for a member's
 *     verdict: admitted, refused (it stops, saying why), or pending (it
 *     waits for `cluster admit`);
 *   - with no live member to answer (the whole cluster restarting), it
 *     decides for itself from what etcd holds: its token must give the
 *     stored verifier, and it must be admitted already (or allow_auto_join
 *     admits it, within max_nodes);
 *   - then it registers `nodes/NAME` under its lease, refused while another
 *     live node holds that name.
 */
import type { X509Certificate } from 'node:crypto';
import type { Lease, Namespace, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { ClusterSpec } from '../config/types.js';
import type { AuditLog } from '../master/audit-log.js';
import { etcdProblem, KEYS } from './etcd.js';
import {
  admit,
  checkJoinRequest,
  makeJoinRequest,
  parseJoinRequest,
  readMembership,
  type JoinRequest,
  type Verdict,
} from './membership.js';
import { sameSecret, type ClusterKeys } from './secrets.js';

/** How long a joining node waits for a live member's verdict before it decides from etcd alone. */
const VERDICT_WAIT_MS = 5_000;
const POLL_MS = 200;

export class JoinRefused extends Error {
  override readonly name = 'JoinRefused';
}

export interface JoinContext {
  readonly spec: ClusterSpec;
  readonly keys: Namespace;
  readonly secrets: ClusterKeys;
  readonly lease: Lease;
  readonly leaseTtlSeconds: number;
  readonly certPem: string;
  readonly keyPem: string;
  readonly ca: X509Certificate;
  readonly log: Logger;
  readonly audit: AuditLog;
}

const self = { role: 'master', pid: process.pid } as const;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function liveNodes(keys: Namespace): Promise<string[]> {
  return (await keys.getAll().prefix(KEYS.nodes).keys()).map((key) => key.slice(KEYS.nodes.length));
}

/** Joins and registers; resolves with how. @throws JoinRefused with the one line to print. */
export async function joinCluster(context: JoinContext): Promise<'founded' | 'admitted' | 'rejoined'> {
  const { spec, keys, secrets, log } = context;
  const name = spec.nodeName;
  const stored = await keys.get(KEYS.verifier).string();
  const membership = await readMembership(keys);
  let how: 'founded' | 'admitted' | 'rejoined';
  if (stored === null && Object.keys(membership.members).length === 0) {
    const request = makeJoinRequest(name, context.certPem, context.keyPem, secrets);
    const { fingerprint } = checkJoinRequest(request, name, context.ca, secrets) as { fingerprint: string };
    const founding = JSON.stringify({
      members: { [name]: { fingerprint, admittedAt: new Date().toISOString(), admittedBy: name } },
    });
    const result = await keys
      .if(KEYS.verifier, 'Create', '==', 0)
      .and(KEYS.membership, 'Create', '==', 0)
      .then(keys.put(KEYS.verifier).value(secrets.verifier), keys.put(KEYS.membership).value(founding))
      .commit();
    if (!result.succeeded) return joinCluster(context); // another node founded it a moment ago
    log.info({ node: name }, 'founded a new cluster');
    how = 'founded';
  } else {
    how = await waitForVerdict(context, stored);
  }
  await register(context);
  return how;
}

async function waitForVerdict(context: JoinContext, stored: string | null): Promise<'admitted' | 'rejoined'> {
  const { spec, keys, secrets, log } = context;
  const name = spec.nodeName;
  const request = makeJoinRequest(name, context.certPem, context.keyPem, secrets);
  await context.lease.put(KEYS.join(name)).value(JSON.stringify(request));
  const asked = Date.now();
  let pendingLogged = false;
  try {
    for (;;) {
      const text = await keys.get(KEYS.verdict(name, request.nonce)).string();
      if (text !== null) {
        const verdict = JSON.parse(text) as Verdict;
        if (verdict.ok) {
          log.info({ node: name, by: verdict.by }, 'admitted to the cluster');
          return 'admitted';
        }
        if (verdict.pending !== true) throw new JoinRefused(`join refused by ${verdict.by}: ${verdict.reason}`);
        if (!pendingLogged) {
          pendingLogged = true;
          log.warn({ node: name }, `waiting for admission: run \`miwidothttp cluster admit ${name}\` on a member`);
        }
      } else if (Date.now() - asked > VERDICT_WAIT_MS) {
        const others = (await liveNodes(keys)).filter((node) => node !== name);
        if (others.length === 0) {
          const decided = await decideAlone(context, stored, request);
          if (decided !== null) return decided;
          if (!pendingLogged) {
            pendingLogged = true;
            log.warn(
              { node: name },
              `no member is alive to admit this node: start one, or run \`miwidothttp cluster admit ${name}\` there`,
            );
          }
        } else if (stored !== null && !sameSecret(stored, secrets.verifier)) {
          throw new JoinRefused(`join refused: cluster_token does not match the cluster's (members ${others.join(', ')} did not answer)`);
        }
      }
      await sleep(POLL_MS);
    }
  } finally {
    await keys
      .delete()
      .key(KEYS.join(name))
      .exec()
      .catch(() => undefined);
  }
}

/** No member alive: the node's own checks against what etcd holds. Null: it must wait. */
async function decideAlone(context: JoinContext, stored: string | null, request: JoinRequest): Promise<'admitted' | 'rejoined' | null> {
  const { spec, keys, secrets } = context;
  if (stored !== null && !sameSecret(stored, secrets.verifier))
    throw new JoinRefused("join refused: cluster_token does not match the cluster's");
  const membership = await readMembership(keys);
  if (membership.members[spec.nodeName] !== undefined) return 'rejoined';
  if (!spec.allowAutoJoin) return null;
  const checked = checkJoinRequest(request, spec.nodeName, context.ca, secrets);
  if (!checked.ok) throw new JoinRefused(`join refused: ${checked.reason}`);
  const admission = await admit(keys, spec.nodeName, checked.fingerprint, spec.nodeName, spec.maxNodes);
  if (!admission.ok) throw new JoinRefused(`join refused: ${admission.reason}`);
  return 'admitted';
}

/** `nodes/NAME` under our lease; a live holder of the name (a restart before its lease ran out) is waited for, once. */
async function register(context: JoinContext): Promise<void> {
  const { keys, spec, lease } = context;
  const name = spec.nodeName;
  const body = JSON.stringify({ name, pid: process.pid, startedAt: new Date().toISOString() });
  const until = Date.now() + (context.leaseTtlSeconds + 2) * 1000;
  for (;;) {
    const result = await keys
      .if(KEYS.node(name), 'Create', '==', 0)
      .then(lease.put(KEYS.node(name)).value(body))
      .commit();
    if (result.succeeded) return;
    if (Date.now() > until) throw new JoinRefused(`another node named ${name} is alive in the cluster (node_name must be unique)`);
    await sleep(POLL_MS);
  }
}

/**
 * A member's side: every join request is checked and answered. The first
 * member to answer a request writes the verdict (a create-only transaction)
 * and audits a refusal; the verdict lives under the joiner's lease.
 */
export class JoinDesk {
  #watcher: Watcher | null = null;

  constructor(
    private readonly context: Omit<JoinContext, 'lease' | 'certPem' | 'keyPem' | 'leaseTtlSeconds'>,
    private readonly writable: () => boolean,
  ) {}

  async start(): Promise<void> {
    const { keys } = this.context;
    const current = await keys.getAll().prefix(KEYS.joins).exec();
    for (const kv of current.kvs) void this.#answer(kv.value.toString('utf8'), kv.lease, false);
    await this.#watcher?.cancel().catch(() => undefined);
    const watcher = await keys
      .watch()
      .prefix(KEYS.joins)
      .startRevision(String(BigInt(current.header.revision) + 1n))
      .create();
    watcher.on('put', (kv) => void this.#answer(kv.value.toString('utf8'), kv.lease, false));
    watcher.on('error', (error) => this.context.log.warn({ problem: etcdProblem(error) }, 'join watch failed; it reconnects'));
    this.#watcher = watcher;
  }

  /** `cluster admit NAME` was run here: a request already waiting is answered now. */
  async admitted(name: string): Promise<void> {
    const kv = (await this.context.keys.getAll().prefix(KEYS.join(name)).exec()).kvs.find(
      (one) => one.key.toString('utf8') === KEYS.join(name),
    );
    if (kv !== undefined) await this.#answer(kv.value.toString('utf8'), kv.lease, true);
  }

  async #answer(text: string, lease: string, overwrite: boolean): Promise<void> {
    if (!this.writable()) return;
    const { keys, spec, secrets, log, audit } = this.context;
    const request = parseJoinRequest(text);
    if (request === null) return;
    const name = request.name;
    let verdict: Verdict;
    const checked = checkJoinRequest(request, name, this.context.ca, secrets);
    if (!checked.ok) verdict = { ok: false, reason: checked.reason, by: spec.nodeName };
    else {
      const membership = await readMembership(keys);
      if (membership.members[name] !== undefined) verdict = { ok: true, reason: 'a member', by: spec.nodeName };
      else if (spec.allowAutoJoin) {
        const admission = await admit(keys, name, checked.fingerprint, spec.nodeName, spec.maxNodes);
        verdict = admission.ok
          ? { ok: true, reason: 'admitted (allow_auto_join)', by: spec.nodeName }
          : { ok: false, reason: admission.reason, by: spec.nodeName };
      } else verdict = { ok: false, pending: true, reason: `waiting for \`miwidothttp cluster admit ${name}\``, by: spec.nodeName };
    }
    const key = KEYS.verdict(name, request.nonce);
    const put = keys.put(key).value(JSON.stringify(verdict)).lease(lease);
    try {
      if (overwrite) await put;
      else if (!(await keys.if(key, 'Create', '==', 0).then(put).commit()).succeeded) return; // another member answered
    } catch (error) {
      log.warn({ node: name, problem: etcdProblem(error) }, 'could not answer a join request');
      return;
    }
    const source = { ...self };
    if (verdict.ok) audit.write('admin', { event: 'cluster.join_admitted', host: name, detail: verdict.reason }, source);
    else if (verdict.pending === true)
      audit.write('security', { event: 'cluster.join_pending', host: name, detail: verdict.reason }, source);
    else {
      audit.write('security', { event: 'cluster.join_refused', host: name, detail: verdict.reason }, source);
      log.warn({ node: name, reason: verdict.reason }, 'refused a node that asked to join');
    }
  }

  async close(): Promise<void> {
    await this.#watcher?.cancel().catch(() => undefined);
  }
}
