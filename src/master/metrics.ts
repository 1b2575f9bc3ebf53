/**
 * Prometheus metrics ([server.metrics]), totalled by the master over every
 * worker of every generation: requests by vhost and status, rejections by
 * reason, IDS matches by rule, open connections, bans, rate-limited
 * requests, worker restarts, reloads and the last reload's result. Counts
 * start at zero with the master.
 *
 * The master never parses a network request: the metrics listener is
 * handed to the workers like any other socket, a worker answers the scrape
 * and asks the master for this text over IPC (MET_SCRAPE / MET_TEXT).
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { WorkerMessage } from '../ipc/messages.js';

type Report = Extract<WorkerMessage, { type: 'MET_REPORT' }>;

export interface MetricSources {
  activeBans(): number;
}

export class Metrics {
  readonly registry = new Registry();
  /** Latest open-connection count per worker link. */
  readonly #connections = new Map<number, number>();
  readonly #requests: Counter<'vhost' | 'status'>;
  readonly #rejections: Counter<'reason'>;
  readonly #idsMatches: Counter<'rule'>;
  readonly #rateLimited: Counter;
  readonly #bans: Counter<'source'>;
  readonly #restarts: Counter;
  readonly #reloads: Counter<'result'>;
  readonly #lastReloadSuccess: Gauge;
  readonly #lastReloadTime: Gauge;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'miwidothttp_requests_total',
      help: 'Responses sent, by vhost (its first domain; "" when none matched) and status.',
      labelNames: ['vhost', 'status'],
      registers,
    });
    this.#rejections = new Counter({
      name: 'miwidothttp_rejections_total',
      help: 'Requests and connections refused, by reason (the audit event).',
      labelNames: ['reason'],
      registers,
    });
    this.#idsMatches = new Counter({
      name: 'miwidothttp_ids_matches_total',
      help: 'IDS rule matches, by rule.',
      labelNames: ['rule'],
      registers,
    });
    this.#rateLimited = new Counter({
      name: 'miwidothttp_rate_limited_requests_total',
      help: 'Requests answered 429 by [security.rate_limiting].',
      registers,
    });
    this.#bans = new Counter({
      name: 'miwidothttp_bans_total',
      help: 'Bans added, by source (limits, ids, admin).',
      labelNames: ['source'],
      registers,
    });
    this.#restarts = new Counter({ name: 'miwidothttp_worker_restarts_total', help: 'Workers started again after dying.', registers });
    this.#reloads = new Counter({
      name: 'miwidothttp_reloads_total',
      help: 'Reloads, by result (ok or refused).',
      labelNames: ['result'],
      registers,
    });
    this.#lastReloadSuccess = new Gauge({
      name: 'miwidothttp_last_reload_success',
      help: '1 when the last reload succeeded, 0 when it was refused.',
      registers,
    });
    this.#lastReloadTime = new Gauge({
      name: 'miwidothttp_last_reload_timestamp_seconds',
      help: 'When the last reload finished.',
      registers,
    });
    const connections = this.#connections;
    new Gauge({
      name: 'miwidothttp_open_connections',
      help: 'Client connections open now, over all workers.',
      registers,
      collect() {
        this.set([...connections.values()].reduce((sum, count) => sum + count, 0));
      },
    });
    new Gauge({
      name: 'miwidothttp_active_bans',
      help: 'Clients banned now.',
      registers,
      collect() {
        this.set(sources.activeBans());
      },
    });
    this.#lastReloadSuccess.set(1);
    for (const result of ['ok', 'refused']) this.#reloads.inc({ result }, 0);
  }

  absorb(linkId: number, report: Report): void {
    this.#connections.set(linkId, report.connections);
    for (const [vhost, status, count] of report.requests) this.#requests.inc({ vhost, status: String(status) }, count);
    for (const [reason, count] of report.rejections) {
      this.#rejections.inc({ reason }, count);
      if (reason === 'request.rate_limited') this.#rateLimited.inc(count);
    }
    for (const [rule, count] of report.idsMatches) this.#idsMatches.inc({ rule }, count);
  }

  workerGone(linkId: number): void {
    this.#connections.delete(linkId);
  }

  banAdded(source: string): void {
    this.#bans.inc({ source });
  }

  workerRestarted(): void {
    this.#restarts.inc();
  }

  reloaded(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'ok' : 'refused' });
    this.#lastReloadSuccess.set(ok ? 1 : 0);
    this.#lastReloadTime.set(Date.now() / 1000);
  }

  /** Responses since the master started, by status over every vhost (the dashboard's traffic chart). */
  async statusTotals(): Promise<Map<number, number>> {
    const totals = new Map<number, number>();
    for (const { labels, value } of (await this.#requests.get()).values) {
      const status = Number(labels.status);
      totals.set(status, (totals.get(status) ?? 0) + value);
    }
    return totals;
  }

  /** Client connections open now, over all workers. */
  openConnections(): number {
    return [...this.#connections.values()].reduce((sum, count) => sum + count, 0);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
