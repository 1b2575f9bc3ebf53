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
 *
 * The master counts in plain maps and loads prom-client at the first scrape,
 * to render them: prom-client and @opentelemetry/api are ~8 MB of resident
 * memory (bench/idle-memory.ts) that a master nobody scrapes never needs.
 */
import type { WorkerMessage } from '../ipc/messages.js';

type Report = Extract<WorkerMessage, { type: 'MET_REPORT' }>;

export interface MetricSources {
  activeBans(): number;
}

/** One counter: its value per label set, in the order the label sets first appeared (prom-client's order). */
class Tally<Label extends string> {
  readonly #values = new Map<string, { labels: Record<Label, string>; value: number }>();

  inc(labels: Record<Label, string>, by = 1): void {
    const key = JSON.stringify(labels);
    const entry = this.#values.get(key);
    if (entry === undefined) this.#values.set(key, { labels, value: by });
    else entry.value += by;
  }

  entries(): Iterable<{ labels: Record<Label, string>; value: number }> {
    return this.#values.values();
  }
}

interface CounterDefinition {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly tally: Tally<string>;
}

interface GaugeDefinition {
  readonly name: string;
  readonly help: string;
  readonly value: () => number | null;
}

export class Metrics {
  /** Latest open-connection count per worker link. */
  readonly #connections = new Map<number, number>();
  readonly #requests = new Tally<'vhost' | 'status'>();
  readonly #rejections = new Tally<'reason'>();
  readonly #idsMatches = new Tally<'rule'>();
  readonly #rateLimited = new Tally<never>();
  readonly #bans = new Tally<'source'>();
  readonly #restarts = new Tally<never>();
  readonly #reloads = new Tally<'result'>();
  #lastReloadSuccess = 1;
  #lastReloadTime: number | null = null;
  /** In the order they are exposed. */
  readonly #counters: readonly CounterDefinition[];
  readonly #gauges: readonly GaugeDefinition[];

  constructor(sources: MetricSources) {
    this.#counters = [
      {
        name: 'miwidothttp_requests_total',
        help: 'Responses sent, by vhost (its first domain; "" when none matched) and status.',
        labelNames: ['vhost', 'status'],
        tally: this.#requests,
      },
      {
        name: 'miwidothttp_rejections_total',
        help: 'Requests and connections refused, by reason (the audit event).',
        labelNames: ['reason'],
        tally: this.#rejections,
      },
      { name: 'miwidothttp_ids_matches_total', help: 'IDS rule matches, by rule.', labelNames: ['rule'], tally: this.#idsMatches },
      {
        name: 'miwidothttp_rate_limited_requests_total',
        help: 'Requests answered 429 by [security.rate_limiting].',
        labelNames: [],
        tally: this.#rateLimited,
      },
      { name: 'miwidothttp_bans_total', help: 'Bans added, by source (limits, ids, admin).', labelNames: ['source'], tally: this.#bans },
      { name: 'miwidothttp_worker_restarts_total', help: 'Workers started again after dying.', labelNames: [], tally: this.#restarts },
      { name: 'miwidothttp_reloads_total', help: 'Reloads, by result (ok or refused).', labelNames: ['result'], tally: this.#reloads },
    ];
    this.#gauges = [
      {
        name: 'miwidothttp_last_reload_success',
        help: '1 when the last reload succeeded, 0 when it was refused.',
        value: () => this.#lastReloadSuccess,
      },
      { name: 'miwidothttp_last_reload_timestamp_seconds', help: 'When the last reload finished.', value: () => this.#lastReloadTime },
      { name: 'miwidothttp_open_connections', help: 'Client connections open now, over all workers.', value: () => this.openConnections() },
      { name: 'miwidothttp_active_bans', help: 'Clients banned now.', value: () => sources.activeBans() },
    ];
    for (const result of ['ok', 'refused']) this.#reloads.inc({ result }, 0);
  }

  absorb(linkId: number, report: Report): void {
    this.#connections.set(linkId, report.connections);
    for (const [vhost, status, count] of report.requests) this.#requests.inc({ vhost, status: String(status) }, count);
    for (const [reason, count] of report.rejections) {
      this.#rejections.inc({ reason }, count);
      if (reason === 'request.rate_limited') this.#rateLimited.inc({}, count);
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
    this.#restarts.inc({});
  }

  reloaded(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'ok' : 'refused' });
    this.#lastReloadSuccess = ok ? 1 : 0;
    this.#lastReloadTime = Date.now() / 1000;
  }

  /** Responses since the master started, by status over every vhost (the dashboard's traffic chart). */
  async statusTotals(): Promise<Map<number, number>> {
    const totals = new Map<number, number>();
    for (const { labels, value } of this.#requests.entries()) {
      const status = Number(labels.status);
      totals.set(status, (totals.get(status) ?? 0) + value);
    }
    return totals;
  }

  /** Client connections open now, over all workers. */
  openConnections(): number {
    return [...this.#connections.values()].reduce((sum, count) => sum + count, 0);
  }

  /** The Prometheus text exposition, rendered by prom-client from the counts now. */
  async text(): Promise<string> {
    const { Counter, Gauge, Registry } = await import('prom-client');
    const registry = new Registry();
    const registers = [registry];
    for (const { name, help, labelNames, tally } of this.#counters) {
      const counter = new Counter({ name, help, labelNames: [...labelNames], registers });
      // A counter without labels is exposed as 0 before its first count, as prom-client does.
      if (labelNames.length === 0) counter.inc(0);
      for (const { labels, value } of tally.entries()) counter.inc(labels, value);
    }
    for (const { name, help, value } of this.#gauges) {
      const gauge = new Gauge({ name, help, registers });
      const now = value();
      if (now !== null) gauge.set(now);
    }
    return registry.metrics();
  }
}
