/**
 * What the master does with one worker's messages, the worker taken to be
 * compromised (docs/security.md): each gets a budget (worker-budget.ts) and
 * a link abuse control knows it by; its questions and reports go where they
 * belong, each checked against its budget first; its audit events are
 * written within their rate; a verdict on it becomes exactly one audit event
 * naming it, the bans its word caused are lifted, and the listening sockets
 * it may have stopped listen again.
 */
import type { Logger } from 'pino';
import type { MasterMessage } from '../ipc/messages.js';
import type { AbuseControl, WorkerLink } from './abuse/index.js';
import type { AuditLog } from './audit-log.js';
import type { WorkerChallengeBoard } from './challenge-board.js';
import type { ListenerSet } from './listeners.js';
import type { Metrics } from './metrics.js';
import { WorkerBudget } from './worker-budget.js';
import { processUid, type Verdict, type WorkerProcess } from './worker-process.js';

/** Audit events a worker had counted and not written are reported at most this often. */
const SUPPRESSED_AUDIT_REPORT_MS = 10_000;
/** The one audit event of a verdict, by its kind. */
const VERDICT_EVENTS: Record<Verdict['kind'], string> = {
  protocol: 'worker.protocol_violation',
  budget: 'worker.over_budget',
  liveness: 'worker.unresponsive',
};

/** Who answers DASH_QUERY (the dashboard's collector); `violation` ends the worker that asked out of turn. */
export interface DashboardDesk {
  query(link: WorkerLink, id: number, permitted: boolean, violation: (why: string) => void): void;
}

export interface DeskServices {
  readonly abuse: AbuseControl;
  readonly metrics: Metrics;
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly listeners: ListenerSet;
  readonly dashboard: DashboardDesk;
  readonly challenges: WorkerChallengeBoard;
}

type Forwarded = Parameters<WorkerProcess['onMessage']>[0];

export class WorkerDesk {
  readonly #links = new Map<WorkerProcess, WorkerLink>();
  readonly #suppressedReportedAt = new Map<WorkerProcess, number>();

  constructor(private readonly services: DeskServices) {}

  /** Takes `worker`'s messages from now on; returns its link (`id`: unique over the master's life). */
  attach(worker: WorkerProcess, id: number): WorkerLink {
    const { audit, log } = this.services;
    const budget = new WorkerBudget(worker.pid, worker.config);
    const source = { role: 'worker', pid: worker.pid, generation: worker.generation, slot: worker.slot, uid: worker.uid } as const;
    const link: WorkerLink = {
      id,
      pid: worker.pid,
      generation: worker.generation,
      slot: worker.slot,
      uid: worker.uid,
      budget,
      get condemned() {
        return worker.verdict !== null;
      },
      post: (message: MasterMessage) => worker.post(message),
      condemn: (rule, detail) => worker.condemn({ kind: 'budget', rule, detail }),
    };
    this.#links.set(worker, link);
    worker.onVerdict = (verdict) => this.#audited(worker, link, verdict);
    worker.onAudit = (event) => {
      if (budget.spendAudit()) audit.write('security', event, source);
    };
    worker.onMessage = (message) => {
      try {
        this.#dispatch(worker, link, message);
      } catch (error) {
        // A bug of the master's, triggered by this worker's message: the worker goes, the master stays.
        log.error({ err: error, slot: worker.slot, workerPid: worker.pid, type: message.type }, 'handling a worker message failed');
        worker.condemn({ kind: 'protocol', rule: 'message.unhandled', detail: `${message.type} could not be handled` });
      }
    };
    return link;
  }

  /** The worker exited: its last suppressed-audit count is written, and it is forgotten. */
  detach(worker: WorkerProcess): void {
    this.reportSuppressedAudit(worker);
    this.#links.delete(worker);
    this.#suppressedReportedAt.delete(worker);
  }

  /**
   * Audit events a worker had counted over its budget and not written, as
   * one event per worker at most every SUPPRESSED_AUDIT_REPORT_MS, or now
   * for `only` (at its exit).
   */
  reportSuppressedAudit(only?: WorkerProcess): void {
    const at = performance.now();
    for (const [worker, link] of this.#links) {
      if (only !== undefined && worker !== only) continue;
      const count = link.budget.suppressedAudit;
      if (count === 0) continue;
      if (only === undefined && at - (this.#suppressedReportedAt.get(worker) ?? 0) < SUPPRESSED_AUDIT_REPORT_MS) continue;
      link.budget.suppressedAudit = 0;
      this.#suppressedReportedAt.set(worker, at);
      this.services.audit.write(
        'security',
        { event: 'worker.audit_suppressed', detail: `${count} audit events over the worker's budget were counted, not written` },
        { role: 'master', pid: process.pid },
        { worker: { slot: worker.slot, pid: worker.pid, generation: worker.generation, uid: worker.uid }, suppressed: count },
      );
    }
  }

  /** A worker's question or report (every message but the channel's own and audit events). */
  #dispatch(worker: WorkerProcess, link: WorkerLink, message: Forwarded): void {
    const { abuse, metrics, dashboard, challenges, log } = this.services;
    switch (message.type) {
      case 'MET_REPORT': {
        const problem = link.budget.reportProblem(message);
        if (problem !== null) worker.condemn({ kind: 'budget', rule: 'vocabulary.metrics', detail: problem });
        else metrics.absorb(link.id, message);
        return;
      }
      case 'MET_SCRAPE':
        // One at a time: the next may come once the answer reached the worker's socket.
        if (link.budget.scrapeOutstanding) {
          worker.condemn({ kind: 'budget', rule: 'budget.scrapes', detail: 'a second MET_SCRAPE before the first was answered' });
          return;
        }
        link.budget.scrapeOutstanding = true;
        void metrics
          .text()
          .catch((error: unknown) => {
            log.error({ err: error }, 'cannot render the metrics');
            return '# metrics unavailable: see the server log\n';
          })
          .then((text) => worker.post({ type: 'MET_TEXT', id: message.id, text }, () => (link.budget.scrapeOutstanding = false)));
        return;
      case 'DASH_QUERY':
        // One at a time, and only from a worker whose generation serves the dashboard.
        dashboard.query(link, message.id, worker.config.server.dashboard !== null, (why) =>
          worker.condemn({ kind: 'budget', rule: 'budget.dashboard', detail: why }),
        );
        return;
      case 'ACME_ACK':
        if (!challenges.acknowledge(worker, message.version))
          worker.condemn({ kind: 'protocol', rule: 'message.out_of_turn', detail: `ACME_ACK for version ${message.version}, never sent` });
        return;
      default:
        abuse.handle(link, message);
    }
  }

  /** The one audit event of a verdict, naming the worker; the bans its word caused are lifted (not for liveness). */
  #audited(worker: WorkerProcess, link: WorkerLink, verdict: Verdict): void {
    const { abuse, listeners, audit, log } = this.services;
    const lifted = verdict.kind === 'liveness' ? 0 : abuse.workerCondemned(link);
    // Whatever it did to the shared listening sockets (stopped them listening), undone for everyone.
    listeners.relistenAll().catch((error: unknown) => log.error({ err: error }, 'cannot listen again after a worker was condemned'));
    const uid = worker.uid ?? (worker.pid === undefined ? null : processUid(worker.pid));
    audit.write(
      'security',
      { event: VERDICT_EVENTS[verdict.kind], detail: verdict.detail },
      { role: 'master', pid: process.pid },
      {
        rule: verdict.rule,
        worker: { slot: worker.slot, pid: worker.pid, generation: worker.generation, uid },
        ...(lifted > 0 && { bansLifted: lifted }),
      },
    );
  }
}
