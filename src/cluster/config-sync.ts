/**
 * Configuration pushes and their results (shared-config.ts says what is
 * shared).
 *
 *   push     validate FILE's shared part with this node's own part (the
 *            same load path as `check`), write it once (sealed) under
 *            config/shared: its etcd revision is the configuration's
 *            revision; then wait until every live node reports it;
 *   follow   every node watches config/shared and runs each new revision
 *            through the master's staged reload; whatever the outcome, it
 *            writes config/results/NODE. A node that refuses keeps serving
 *            its previous revision, and its result says why.
 */
import type { Namespace, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { LoadResult } from '../config/load.js';
import type { PreflightPurpose } from '../config/preflight/index.js';
import type { ClusterSpec } from '../config/types.js';
import type { AuditLog } from '../master/audit-log.js';
import type { ReloadOutcome } from '../master/supervisor.js';
import type { PushAnswer } from '../ipc/control.js';
import { etcdProblem, KEYS } from './etcd.js';
import { open, seal, type ClusterKeys } from './secrets.js';
import { loadMerged, parseSharedRevision, readDocument, sharedPart, type SharedRevision } from './shared-config.js';
import { loadConfigDocument } from '../config/load.js';
import { mergeShared } from './shared-config.js';

/** How long `cluster push` waits for every live node's result. */
const PUSH_WAIT_MS = 120_000;
const POLL_MS = 250;
/** A reload already running (a SIGHUP): the pushed revision waits for it. */
const BUSY_RETRY_MS = 500;

/** What each node writes under config/results/NODE. */
export interface ConfigResult {
  /** The revision the reload tried. */
  readonly revision: string | null;
  /** The revision the node runs after it (the tried one, or the previous one when refused). */
  readonly running: string | null;
  readonly ok: boolean;
  readonly reason: string | null;
  readonly at: string;
  readonly trigger: string;
}

const source = { role: 'master', pid: process.pid } as const;

export class SharedConfigs {
  #shared: SharedRevision | null = null;
  /** The latest revision seen in etcd (null: nothing was ever pushed). */
  #latest: string | null = null;
  /** The revision the serving generation runs. */
  #applied: string | null = null;
  /** The revision the last load() merged. */
  #loading: string | null = null;
  #recordedStart = false;
  #watcher: Watcher | null = null;
  #reload: ((trigger: string) => Promise<ReloadOutcome>) | null = null;
  #running: Promise<void> | null = null;
  /** A revision this node refused: not tried again until a newer one comes. */
  #refused: string | null = null;
  readonly #fullKey: string;

  constructor(
    private readonly keys: Namespace,
    private readonly secrets: ClusterKeys,
    private readonly spec: ClusterSpec,
    private readonly configPath: string,
    private readonly log: Logger,
    private readonly audit: AuditLog,
  ) {
    this.#fullKey = spec.keyPrefix + KEYS.sharedConfig;
  }

  get latestRevision(): string | null {
    return this.#latest;
  }

  get appliedRevision(): string | null {
    return this.#applied;
  }

  /** Reads the latest revision (a linearizable read: what the quorum holds). */
  async fetch(): Promise<string> {
    const answer = await this.keys.get(KEYS.sharedConfig).exec();
    const kv = answer.kvs[0];
    if (kv !== undefined) this.#take(kv.value.toString('utf8'), kv.mod_revision);
    return answer.header.revision;
  }

  load(purpose: PreflightPurpose): LoadResult {
    this.#loading = this.#latest;
    return loadMerged(this.configPath, this.#shared, this.#latest, purpose);
  }

  /** From now on, run every new revision through `reload`; a revision missed while away is run now. */
  async follow(reload: (trigger: string) => Promise<ReloadOutcome>): Promise<void> {
    this.#reload = reload;
    if (!this.#recordedStart) {
      this.#recordedStart = true;
      this.#applied = this.#loading;
      await this.#writeResult({
        revision: this.#loading,
        running: this.#loading,
        ok: true,
        reason: null,
        at: new Date().toISOString(),
        trigger: 'start',
      });
    }
    const revision = await this.fetch();
    await this.#watcher?.cancel().catch(() => undefined);
    const watcher = await this.keys
      .watch()
      .key(KEYS.sharedConfig)
      .startRevision(String(BigInt(revision) + 1n))
      .create();
    watcher.on('put', (kv) => {
      this.#take(kv.value.toString('utf8'), kv.mod_revision);
      this.#schedule();
    });
    watcher.on('error', (error) => this.log.warn({ problem: etcdProblem(error) }, 'configuration watch failed; it reconnects'));
    this.#watcher = watcher;
    this.#schedule();
  }

  /** Resolves once the latest revision seen has been tried (rejoin waits for it before leaving read-only). */
  async caughtUp(): Promise<void> {
    while (this.#running !== null) await this.#running;
  }

  /** A reload ran (any trigger): what the node runs now, for `cluster status` and the pusher. */
  async recordReload(trigger: string, outcome: ReloadOutcome): Promise<void> {
    const revision = this.#loading;
    if (outcome.ok) this.#applied = revision;
    else if (revision !== this.#applied) this.#refused = revision;
    await this.#writeResult({
      revision,
      running: this.#applied,
      ok: outcome.ok,
      reason: outcome.ok ? null : outcome.reason,
      at: new Date().toISOString(),
      trigger,
    });
  }

  async push(file: string): Promise<PushAnswer> {
    const document = readDocument(file);
    if (!document.ok) return { ok: false, reason: document.problem };
    const shared = sharedPart(document.document);
    if (Object.keys(shared).length === 0)
      return { ok: false, reason: `${file} has none of [[vhosts]], [security], [ssl]: nothing to push` };
    const local = readDocument(this.configPath);
    if (!local.ok) return { ok: false, reason: local.problem };
    // The preflight `check` runs, on this node, before anything is written.
    const checked = loadConfigDocument(mergeShared(local.document, shared), `${file} (shared part) with ${this.configPath}`, 'check');
    if (!checked.ok) return { ok: false, reason: `refused before writing: ${checked.errors.join('; ')}` };
    const revisionDocument: SharedRevision = { shared, pushedBy: this.spec.nodeName, pushedAt: new Date().toISOString(), file };
    let revision: string;
    try {
      const live = await this.#liveNodes();
      const put = await this.keys
        .put(KEYS.sharedConfig)
        .value(seal(this.secrets, this.#fullKey, JSON.stringify(revisionDocument)))
        .exec();
      revision = put.header.revision;
      this.audit.write('configuration', { event: 'cluster.config_pushed', detail: `${file} as revision ${revision}` }, source);
      this.log.info({ revision, file, nodes: live }, 'configuration pushed to the cluster');
      return await this.#awaitResults(revision, live);
    } catch (error) {
      return { ok: false, reason: `the cluster did not take the push: ${etcdProblem(error)}` };
    }
  }

  async close(): Promise<void> {
    await this.#watcher?.cancel().catch(() => undefined);
  }

  #take(sealed: string, revision: string): void {
    if (this.#latest !== null && BigInt(revision) <= BigInt(this.#latest)) return;
    try {
      const parsed = parseSharedRevision(open(this.secrets, this.#fullKey, sealed).toString('utf8'));
      if (parsed === null) throw new Error('not a configuration revision');
      this.#shared = parsed;
      this.#latest = revision;
    } catch (error) {
      this.log.error({ revision, problem: (error as Error).message }, 'ignored a shared configuration that does not open');
    }
  }

  #schedule(): void {
    if (this.#running !== null || this.#reload === null) return;
    const latest = this.#latest;
    if (latest === null || latest === this.#applied || latest === this.#refused) return;
    this.#running = this.#apply(latest).finally(() => {
      this.#running = null;
      this.#schedule();
    });
  }

  async #apply(revision: string): Promise<void> {
    const reload = this.#reload!;
    for (;;) {
      const outcome = await reload(`cluster revision ${revision}`);
      if (outcome.ok || !outcome.reason.includes('already in progress')) return;
      await new Promise((resolve) => setTimeout(resolve, BUSY_RETRY_MS));
    }
  }

  async #writeResult(result: ConfigResult): Promise<void> {
    try {
      await this.keys.put(KEYS.configResult(this.spec.nodeName)).value(JSON.stringify(result)).exec();
    } catch (error) {
      this.log.warn({ problem: etcdProblem(error) }, 'could not record the reload result in the cluster');
    }
  }

  async #liveNodes(): Promise<string[]> {
    return (await this.keys.getAll().prefix(KEYS.nodes).keys()).map((key) => key.slice(KEYS.nodes.length));
  }

  async #awaitResults(revision: string, nodes: readonly string[]): Promise<PushAnswer> {
    const deadline = Date.now() + PUSH_WAIT_MS;
    const answers = new Map<string, { ok: boolean; reason: string | null }>();
    while (Date.now() < deadline) {
      const live = new Set(await this.#liveNodes());
      const results = await this.keys.getAll().prefix(KEYS.configResults).strings();
      for (const node of nodes) {
        if (answers.has(node)) continue;
        const text = results[KEYS.configResult(node)];
        const result = text === undefined ? null : (JSON.parse(text) as ConfigResult);
        if (result !== null && result.revision !== null && BigInt(result.revision) >= BigInt(revision)) {
          if (result.revision === revision) answers.set(node, { ok: result.ok, reason: result.reason });
          else answers.set(node, { ok: false, reason: `revision ${result.revision} was pushed since` });
        } else if (!live.has(node)) answers.set(node, { ok: false, reason: 'left the cluster before answering' });
      }
      if (answers.size === nodes.length) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const report = nodes.map((name) => ({
      name,
      ...(answers.get(name) ?? { ok: false, reason: `no answer within ${PUSH_WAIT_MS / 1000} s` }),
    }));
    return { ok: report.every((node) => node.ok), revision, nodes: report };
  }
}
