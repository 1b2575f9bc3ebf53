/**
 * The worker's counts for the Prometheus endpoint: requests by vhost and
 * status, rejections by reason, IDS matches by rule, and its open
 * connections. They are plain counters here; once a second what changed
 * goes to the master (MET_REPORT), which alone keeps the totals, so the
 * numbers add up across workers and survive a worker's restart.
 */
import { MAX_BATCH_ENTRIES } from '../ipc/messages.js';
import type { MasterPort } from './master-link.js';

const REPORT_INTERVAL_MS = 1000;

export class WorkerMetrics {
  /** Responses since the last report by vhost, then status: no key string is built per response. */
  readonly #requests = new Map<string, Map<number, number>>();
  #rejections = new Map<string, number>();
  #idsMatches = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly master: MasterPort,
    private readonly openConnections: () => number,
  ) {
    this.#timer = setInterval(() => this.flush(), REPORT_INTERVAL_MS);
    this.#timer.unref();
  }

  /** A response went out; `vhost` is the matched vhost's first name, "" when none matched. */
  response(vhost: string, status: number): void {
    let byStatus = this.#requests.get(vhost);
    if (byStatus === undefined) {
      byStatus = new Map();
      this.#requests.set(vhost, byStatus);
    }
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  /** A request or connection was refused: the audit event names the reason. */
  rejection(event: string): void {
    this.#rejections.set(event, (this.#rejections.get(event) ?? 0) + 1);
  }

  idsMatch(rule: string): void {
    this.#idsMatches.set(rule, (this.#idsMatches.get(rule) ?? 0) + 1);
  }

  /** Sends what changed since the last report (and the connection count, always). */
  flush(): void {
    const requests: [string, number, number][] = [];
    for (const [vhost, byStatus] of this.#requests) {
      for (const [status, count] of byStatus) requests.push([vhost, status, count]);
      byStatus.clear();
    }
    const rejections = [...this.#rejections];
    const idsMatches = [...this.#idsMatches];
    this.#rejections = new Map();
    this.#idsMatches = new Map();
    const connections = this.openConnections();
    const rounds = Math.max(1, Math.ceil(Math.max(requests.length, rejections.length, idsMatches.length) / MAX_BATCH_ENTRIES));
    for (let i = 0; i < rounds; i++) {
      const slice = <T>(list: T[]): T[] => list.slice(i * MAX_BATCH_ENTRIES, (i + 1) * MAX_BATCH_ENTRIES);
      this.master.sendMetrics({
        type: 'MET_REPORT',
        connections,
        requests: slice(requests),
        rejections: slice(rejections),
        idsMatches: slice(idsMatches),
      });
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
