/**
 * This master as a node of the cluster: the one object the master talks to
 * (src/master/main.ts), built from the pieces beside it.
 *
 *   start()    reach etcd (mTLS), join (join.ts), read the latest shared
 *              configuration: the master starts on it;
 *   attach()   once the master's parts exist: bans, ticket keys, challenge
 *              answers and configuration pushes start flowing;
 *   health     every 250 ms (health.ts): on a lost quorum the node goes
 *              read-only at once (it keeps serving its last configuration,
 *              certificates and bans; pushes, ban writes and orders are
 *              refused); with auto_rejoin it comes back rejoin_delay after
 *              the quorum did, once it has caught up.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { Lease } from 'etcd3';
import type { Logger } from 'pino';
import type { LoadResult } from '../config/load.js';
import type { PreflightPurpose } from '../config/preflight/index.js';
import type { ClusterSpec, IssuanceSpec } from '../config/types.js';
import type { AuditLog } from '../master/audit-log.js';
import type { BanReplica } from '../master/abuse/index.js';
import type { ReloadOutcome } from '../master/supervisor.js';
import type { SharedTicketSettings } from '../master/session-tickets.js';
import type { ChallengeBoard, Issuer } from '../tls/issuance/types.js';
import { ClusterIssuer } from './acme.js';
import { ClusterBans, type BanTarget } from './bans.js';
import { ChallengeMirror, ClusterChallengeBoard, type ChallengeContext } from './challenges.js';
import type { ClusterRequest, ClusterStatus, ClusterSummary, ControlAnswers } from '../ipc/control.js';
import { connectEtcd, etcdProblem, KEYS, type EtcdConnection } from './etcd.js';
import { HEALTH_INTERVAL_MS, healthRound, type MemberHealth } from './health.js';
import { JoinDesk, joinCluster, JoinRefused, type JoinContext } from './join.js';
import { ManagedMember } from './managed-etcd.js';
import { SharedConfigs } from './config-sync.js';
import { deriveClusterKeys, type ClusterKeys } from './secrets.js';
import { ClusterTickets, type TicketTarget } from './tickets.js';
import { clusterStatus, admitNode, removeNode } from './admin.js';

/** A node is alive while its lease is: this long after it stops (SIGKILL, a pause), the others see it gone. */
export const NODE_LEASE_TTL_S = 5;
/** How long a node with a managed member waits for the etcd quorum at start. */
const MANAGED_QUORUM_WAIT_MS = 60_000;
/** Longest a stop waits for etcd (watches cancelled, the lease revoked). */
const CLOSE_TIMEOUT_MS = 1_500;

/** What the master gives the cluster once its parts exist. */
export interface MasterParts {
  /** The master's reload (staged, audited): the cluster asks it to run a pushed revision. */
  reload(trigger: string): Promise<ReloadOutcome>;
  readonly abuse: BanTarget & { replicateBans(replica: BanReplica): void };
  readonly tickets: TicketTarget;
  /** This node's workers' challenge board. */
  readonly workersBoard: ChallengeBoard;
  /** Whether the serving generation answers ACME challenges ([ssl] provider = "acme"). */
  answersChallenges(): boolean;
}

const source = { role: 'master', pid: process.pid } as const;

export class ClusterNode {
  readonly name: string;
  readonly #connection: EtcdConnection;
  readonly #secrets: ClusterKeys;
  #lease: Lease;
  #leaseLost = false;
  #quorum = true;
  #readOnly: { reason: string; since: number } | null = null;
  #rejoinTimer: NodeJS.Timeout | null = null;
  #rejoining = false;
  #rejoinLogged = false;
  #closed = false;
  #members: readonly MemberHealth[] = [];
  #parts: MasterParts | null = null;
  readonly bans: ClusterBans;
  readonly configs: SharedConfigs;
  #tickets: ClusterTickets | null = null;
  #mirror: ChallengeMirror | null = null;
  readonly #desk: JoinDesk;
  readonly #ca: X509Certificate;

  private constructor(
    readonly spec: ClusterSpec,
    configPath: string,
    private readonly log: Logger,
    private readonly audit: AuditLog,
    connection: EtcdConnection,
    secrets: ClusterKeys,
    lease: Lease,
    private readonly managed: ManagedMember | null,
  ) {
    this.name = spec.nodeName;
    this.#connection = connection;
    this.#secrets = secrets;
    this.#lease = lease;
    this.#ca = new X509Certificate(readFileSync(spec.caFile));
    this.#watchLease(lease);
    this.bans = new ClusterBans(connection.keys, secrets, spec.keyPrefix, this.name, log, () => this.writeRefusal('ban writes'));
    this.configs = new SharedConfigs(connection.keys, secrets, spec, configPath, log, audit);
    this.#desk = new JoinDesk({ spec, keys: connection.keys, secrets, ca: this.#ca, log, audit }, () => this.#readOnly === null);
  }

  /**
   * Reaches etcd, joins, and reads the shared configuration.
   * @throws Error with the one line `start` prints (audited as cluster.join_refused when the cluster said no).
   */
  static async start(spec: ClusterSpec, configPath: string, log: Logger, audit: AuditLog): Promise<ClusterNode> {
    const secrets = deriveClusterKeys(spec.token);
    const managed = spec.managed === null ? null : await ManagedMember.start(spec, secrets, log);
    const connection = connectEtcd(spec);
    const refuse = (reason: string): Error => {
      audit.write('security', { event: 'cluster.join_refused', host: spec.nodeName, detail: reason }, source);
      return new Error(`cluster: ${reason}`);
    };
    let lease: Lease | null = null;
    try {
      // A managed member's founding peers may start a little later: the quorum is waited for, a while.
      const reachUntil = Date.now() + (managed === null ? 0 : MANAGED_QUORUM_WAIT_MS);
      for (let logged = false; ; ) {
        try {
          await connection.keys.get(KEYS.verifier).exec();
          break;
        } catch (error) {
          if (Date.now() >= reachUntil) throw refuse(`cannot reach etcd (${spec.endpoints.join(', ')}): ${etcdProblem(error)}`);
          if (!logged) log.warn('waiting for the etcd quorum (the other founding members starting)');
          logged = true;
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
      lease = connection.keys.lease(NODE_LEASE_TTL_S);
      await lease.grant();
      const context: JoinContext = {
        spec,
        keys: connection.keys,
        secrets,
        lease,
        leaseTtlSeconds: NODE_LEASE_TTL_S,
        certPem: readFileSync(spec.certFile, 'utf8'),
        keyPem: readFileSync(spec.keyFile, 'utf8'),
        ca: new X509Certificate(readFileSync(spec.caFile)),
        log,
        audit,
      };
      let how: string;
      try {
        how = await joinCluster(context);
      } catch (error) {
        if (error instanceof JoinRefused) throw refuse(error.message);
        throw new Error(`cluster: joining failed: ${etcdProblem(error)}`);
      }
      const node = new ClusterNode(spec, configPath, log, audit, connection, secrets, lease, managed);
      await node.configs.fetch();
      audit.write('admin', { event: 'cluster.joined', host: spec.nodeName, detail: how }, source);
      log.info({ node: spec.nodeName, how, configRevision: node.configs.latestRevision }, 'joined the cluster');
      return node;
    } catch (error) {
      await lease?.revoke().catch(() => undefined);
      connection.close();
      await managed?.stop();
      throw error;
    }
  }

  /** This node's configuration: its own file with the cluster's shared part (shared-config.ts). */
  load(purpose: PreflightPurpose): LoadResult {
    return this.configs.load(purpose);
  }

  /** The master's parts exist and the first generation serves: start sharing. */
  async attach(parts: MasterParts): Promise<void> {
    this.#parts = parts;
    this.bans.attach(parts.abuse);
    parts.abuse.replicateBans(this.bans);
    this.#tickets = new ClusterTickets(
      this.#connection.keys,
      this.#secrets,
      this.spec.keyPrefix + KEYS.ticketKey,
      parts.tickets,
      this.log,
      () => this.#readOnly === null,
    );
    this.#mirror = new ChallengeMirror(this.#challengeContext(), parts.workersBoard, () => parts.answersChallenges(), this.log);
    await this.#syncAll();
    void this.#healthLoop();
  }

  /** Why `what` is refused now (the node is read-only), or null. */
  writeRefusal(what: string): string | null {
    const readOnly = this.#readOnly;
    if (readOnly === null) return null;
    return `the cluster is read-only (${what} refused): etcd quorum lost since ${new Date(readOnly.since).toISOString()}: ${readOnly.reason}`;
  }

  get readOnly(): boolean {
    return this.#readOnly !== null;
  }

  get quorum(): boolean {
    return this.#quorum;
  }

  /** Ticket settings every node shares: the session ID context comes from cluster_token, keys from etcd. */
  sharedTickets(): SharedTicketSettings {
    return { contextSecret: this.#secrets.ticketContext };
  }

  /** The ACME or Origin CA issuer, wrapped: one order per name for the whole cluster. */
  issuer(spec: IssuanceSpec, inner: Issuer): Issuer {
    return new ClusterIssuer(
      {
        keys: this.#connection.keys,
        secrets: this.#secrets,
        prefix: this.spec.keyPrefix,
        nodeName: this.name,
        lease: () => this.#lease,
        writeRefusal: () => this.writeRefusal('certificate orders'),
        log: this.log,
      },
      spec,
      inner,
    );
  }

  /** The board the issuer writes challenge answers to: they go to every node. */
  challengeBoard(): ChallengeBoard {
    return new ClusterChallengeBoard(this.#challengeContext());
  }

  /** A reload happened on this node (any trigger): recorded for `cluster status` and the pusher. */
  reloaded(trigger: string, outcome: ReloadOutcome): void {
    void this.configs.recordReload(trigger, outcome);
    if (outcome.ok) this.#mirror?.refresh();
  }

  /** For `miwidothttp status`: one line of what the cluster looks like from here. */
  summary(): ClusterSummary {
    return { node: this.name, read_only: this.readOnly, quorum: this.#quorum, config_revision: this.configs.appliedRevision };
  }

  async control(request: ClusterRequest): Promise<ControlAnswers['cluster']> {
    const keys = this.#connection.keys;
    switch (request.action) {
      case 'status':
        return this.status();
      case 'push': {
        const refused = this.writeRefusal('configuration pushes');
        if (refused !== null) return { ok: false, reason: refused };
        return this.configs.push(request.file);
      }
      case 'admit': {
        const refused = this.writeRefusal('admissions');
        if (refused !== null) return { ok: false, reason: refused };
        const answer = await admitNode(keys, request.name, this.spec, this.audit);
        if (answer.ok) await this.#desk.admitted(request.name).catch(() => undefined);
        return answer;
      }
      case 'remove': {
        const refused = this.writeRefusal('removals');
        if (refused !== null) return { ok: false, reason: refused };
        return removeNode(keys, request.name, this.spec, this.audit, this.managed);
      }
      case 'rejoin':
        if (this.#readOnly === null) return { ok: true, detail: 'not read-only' };
        if (!this.#quorum) return { ok: false, reason: this.writeRefusal('rejoin') ?? 'no quorum' };
        await this.#rejoin();
        return this.#readOnly === null ? { ok: true, detail: 'rejoined' } : { ok: false, reason: 'catching up failed; see the log' };
    }
  }

  async status(): Promise<ClusterStatus> {
    return clusterStatus({
      keys: this.#connection.keys,
      spec: this.spec,
      stale: !this.#quorum,
      readOnly: this.#readOnly,
      quorum: this.#quorum,
      appliedRevision: this.configs.appliedRevision,
      latestRevision: this.configs.latestRevision,
      members: this.#members,
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#rejoinTimer !== null) clearTimeout(this.#rejoinTimer);
    // Leaving now, not when the lease runs out: the others see this node gone at once. Bounded: a node
    // without quorum cannot revoke, and a watch on a silent member may never confirm its cancel.
    const bounded = (work: Promise<unknown>): Promise<unknown> =>
      Promise.race([work.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref())]);
    await bounded(
      Promise.all([this.bans.close(), this.configs.close(), this.#tickets?.close(), this.#mirror?.close(), this.#desk.close()]),
    );
    await bounded(this.#lease.revoke());
    this.#lease.release(); // no keep-alive timer may outlive the master
    this.#connection.close();
    await this.managed?.stop();
  }

  #challengeContext(): ChallengeContext {
    return {
      keys: this.#connection.keys,
      secrets: this.#secrets,
      prefix: this.spec.keyPrefix,
      nodeName: this.name,
      lease: () => this.#lease,
      liveNodes: async () => (await this.#connection.keys.getAll().prefix(KEYS.nodes).keys()).map((key) => key.slice(KEYS.nodes.length)),
    };
  }

  #watchLease(lease: Lease): void {
    lease.on('lost', (error) => {
      if (this.#closed || lease !== this.#lease) return;
      this.#leaseLost = true;
      this.log.warn({ problem: etcdProblem(error) }, 'the node lease was lost (the node was paused or cut off past its TTL)');
      // With the quorum there (a pause, not a split), register again now; otherwise the rejoin does.
      if (this.#readOnly === null)
        void this.#reRegister().catch((problem: unknown) => this.log.error({ problem: etcdProblem(problem) }, 'cannot register again'));
    });
  }

  /** A new lease, and `nodes/NAME` under it (the old lease revoked first, in case etcd still holds it). */
  async #reRegister(): Promise<void> {
    if (!this.#leaseLost || this.#closed) return;
    const stale = this.#lease;
    await stale.revoke().catch(() => undefined);
    const lease = this.#connection.keys.lease(NODE_LEASE_TTL_S);
    await lease.grant();
    this.#lease = lease;
    this.#leaseLost = false;
    this.#watchLease(lease);
    await lease.put(KEYS.node(this.name)).value(JSON.stringify({ name: this.name, pid: process.pid, startedAt: new Date().toISOString() }));
    this.log.info('registered again under a new lease');
  }

  /** Everything that follows etcd, from the current state on: at attach and at every rejoin. */
  async #syncAll(): Promise<void> {
    await this.bans.sync();
    await this.#tickets?.sync();
    await this.#mirror?.sync();
    await this.#desk.start();
    await this.configs.follow((trigger) => this.#parts?.reload(trigger) ?? Promise.resolve({ ok: false, reason: 'not attached' }));
  }

  async #healthLoop(): Promise<void> {
    while (!this.#closed) {
      const round = await healthRound(this.#connection, this.spec);
      if (this.#closed) return;
      this.#members = round.members;
      this.#quorum = round.quorum;
      if (!round.quorum) {
        if (this.#rejoinTimer !== null) clearTimeout(this.#rejoinTimer);
        this.#rejoinTimer = null;
        if (this.#readOnly === null) this.#enterReadOnly(round.problem ?? 'no quorum');
      } else if (this.#readOnly !== null && this.#rejoinTimer === null && !this.#rejoining) {
        if (this.spec.autoRejoin) {
          this.log.info({ inMs: this.spec.rejoinDelayMs }, 'etcd quorum is back: rejoining after rejoin_delay');
          this.#rejoinTimer = setTimeout(() => {
            this.#rejoinTimer = null;
            void this.#rejoin();
          }, this.spec.rejoinDelayMs);
        } else if (!this.#rejoinLogged) {
          this.#rejoinLogged = true;
          this.log.warn('etcd quorum is back; auto_rejoin is off: run `miwidothttp cluster rejoin` to leave read-only');
        }
      }
      await new Promise((resolve) => setTimeout(resolve, HEALTH_INTERVAL_MS));
    }
  }

  #enterReadOnly(reason: string): void {
    this.#readOnly = { reason, since: Date.now() };
    this.#rejoinLogged = false;
    this.log.error({ reason }, 'etcd quorum lost: read-only (serving the last configuration, certificates and bans)');
    this.audit.write('security', { event: 'cluster.quorum_lost', host: this.name, detail: reason }, source);
  }

  /** Catch up (lease, registration, bans, tickets, challenges, configuration), then leave read-only. */
  async #rejoin(): Promise<void> {
    if (this.#rejoining || this.#closed) return;
    this.#rejoining = true;
    try {
      await this.#reRegister();
      await this.#syncAll();
      await this.configs.caughtUp();
      if (!this.#quorum) throw new Error('the quorum went again while catching up');
      const since = this.#readOnly?.since ?? Date.now();
      this.#readOnly = null;
      this.log.info({ readOnlyForMs: Date.now() - since }, 'etcd quorum regained: writable again, caught up');
      this.audit.write('security', { event: 'cluster.quorum_regained', host: this.name }, source, { readOnlyForMs: Date.now() - since });
    } catch (error) {
      this.log.error({ problem: etcdProblem(error) }, 'rejoining failed; still read-only, trying again');
    } finally {
      this.#rejoining = false;
    }
  }
}
