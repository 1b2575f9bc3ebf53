/**
 * The master's side of the security dashboard ([server.dashboard]): it
 * gathers the state the page shows and answers DASH_QUERY with it. The
 * master never parses a network request: the listener is the workers', and
 * a worker asks here for the state of whoever holds the token.
 *
 * Read-only by construction: the collector reads the supervisor, the ban
 * list, the certificates, the metrics, /proc and the cgroup files, and keeps
 * a bounded memory of the audit events it is shown; nothing a worker sends
 * can change anything. A worker may ask only when its generation has a
 * dashboard listener, and only once at a time (its link coalesces callers);
 * anything else ends that worker. The state is rendered at most once a
 * second however many workers ask.
 */
import type { CompiledConfig } from '../../config/types.js';
import { MAX_DASHBOARD_STATE_BYTES } from '../../ipc/messages.js';
import { cgroupMounts } from '../../isolation/cgroups.js';
import type { Ban } from '../abuse/bans.js';
import type { WorkerLink } from '../abuse/index.js';

/** What the collector needs of a worker: who it is, and how to answer it. */
type DashboardPeer = Pick<WorkerLink, 'id' | 'post'>;
import type { AuditEntry } from '../audit-log.js';
import type { CertificateView } from '../../ipc/control.js';
import type { WorkerStatus } from '../supervisor.js';
import { evaluateChecklist } from './checklist.js';
import { inspectProcess, type ProcessFacts } from './host-facts.js';
import { EventRing, HISTORY_MS, isRefusal, RefusalTally, refusalCount, TrafficHistory } from './history.js';

/** How often the request totals are sampled for the chart. */
export const TRAFFIC_SAMPLE_MS = 5000;
/** How long one rendering of the state is reused. */
const STATE_CACHE_MS = 1000;
const RECENT_EVENTS = 100;
const TOP_REFUSED_CLIENTS = 10;
/** Bans listed at most (the soonest to end first); the total is always given. */
const LISTED_BANS = 200;
/** Longest string of an event the page gets: it shows one line per event. */
const MAX_EVENT_TEXT = 300;
const DAY_MS = 86_400_000;

/** What the collector reads: closures over the master's parts, so it holds none of them. */
export interface DashboardSources {
  /** The serving generation's config. */
  config(): CompiledConfig;
  generation(): number;
  workers(): Promise<WorkerStatus[]>;
  bans(): readonly Ban[];
  certificates(): CertificateView[];
  /** Why the last start or reload could not load a certificate, or null. */
  certificateError(): string | null;
  statusTotals(): Promise<Map<number, number>>;
  openConnections(): number;
  auditLogFailing(): boolean;
}

type EventView = Record<string, unknown>;

interface ReloadView {
  readonly at: string;
  readonly ok: boolean;
  readonly generation: number | null;
  readonly detail: string | null;
}

const clip = (value: unknown): unknown => {
  if (typeof value === 'string') return value.length > MAX_EVENT_TEXT ? `${value.slice(0, MAX_EVENT_TEXT)}…` : value;
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, clip(inner)]));
  return value;
};

/** An audit entry as the page gets it: the audit log's own fields (already redacted), strings clipped. */
function eventView(entry: AuditEntry): EventView {
  const view: EventView = { time: entry.time };
  for (const [key, value] of Object.entries(entry.fields)) {
    if (value === undefined || key === 'event') continue;
    view[key === 'audit' ? 'event' : key] = clip(value);
  }
  return view;
}

export class DashboardCollector {
  readonly #traffic: TrafficHistory;
  readonly #refusals = new RefusalTally();
  readonly #events = new EventRing<EventView>(RECENT_EVENTS);
  readonly #idsEvents = new EventRing<EventView>(RECENT_EVENTS);
  #lastReload: ReloadView | null = null;
  /** Links with a DASH_QUERY unanswered. */
  readonly #outstanding = new Set<number>();
  #cached: { at: number; json: Promise<string> } | null = null;
  readonly #sampler: NodeJS.Timeout;
  readonly #startedAt = Date.now();

  constructor(
    private readonly sources: DashboardSources,
    sampleMs = TRAFFIC_SAMPLE_MS,
  ) {
    this.#traffic = new TrafficHistory(this.#startedAt);
    this.#sampler = setInterval(() => {
      void sources.statusTotals().then((totals) => this.#traffic.sample(Date.now(), totals));
    }, sampleMs);
    this.#sampler.unref();
  }

  /** Every audit event, as the audit log writes it (AuditLog.observer). */
  recordAudit(entry: AuditEntry): void {
    const name = String(entry.fields.audit);
    const view = eventView(entry);
    this.#events.push(view);
    if (name.startsWith('ids.')) this.#idsEvents.push(view);
    const clientIp = entry.fields.clientIp;
    // The one table a flood of addresses can fill (to its cap): kept only while someone can look at it.
    if (typeof clientIp === 'string' && isRefusal(name) && this.sources.config().server.dashboard !== null)
      this.#refusals.add(clientIp, refusalCount(entry), name, Date.parse(entry.time));
    if (name === 'config.reload' || name === 'config.reload_refused') {
      const generation = entry.fields.generation;
      const detail = entry.fields.detail;
      this.#lastReload = {
        at: entry.time,
        ok: name === 'config.reload',
        generation: typeof generation === 'number' ? generation : null,
        detail: typeof detail === 'string' ? (clip(detail) as string) : null,
      };
    }
  }

  /**
   * A worker's DASH_QUERY. `permitted`: its generation has a dashboard
   * listener. `violation` ends the worker, with the reason.
   */
  query(link: DashboardPeer, id: number, permitted: boolean, violation: (why: string) => void): void {
    if (!permitted) violation('sent DASH_QUERY without a dashboard listener');
    else if (this.#outstanding.has(link.id)) violation('sent DASH_QUERY while its previous one was unanswered');
    else this.#answer(link, id);
  }

  #answer(link: DashboardPeer, id: number): void {
    this.#outstanding.add(link.id);
    void this.state().then((json) => {
      this.#outstanding.delete(link.id);
      link.post({ type: 'DASH_STATE', id, json });
    });
  }

  /** The state as JSON text, rendered at most once a second. Never rejects. */
  state(): Promise<string> {
    const now = performance.now();
    if (this.#cached === null || now - this.#cached.at >= STATE_CACHE_MS)
      this.#cached = {
        at: now,
        json: this.#render().catch((error: unknown) => JSON.stringify({ error: `state unavailable: ${(error as Error).message}` })),
      };
    return this.#cached.json;
  }

  close(): void {
    clearInterval(this.#sampler);
  }

  async #render(): Promise<string> {
    const now = Date.now();
    const config = this.sources.config();
    const generation = this.sources.generation();
    const mounts = cgroupMounts();
    const statuses = await this.sources.workers();
    const facts = new Map<number, ProcessFacts>();
    for (const status of statuses) if (status.pid !== null) facts.set(status.pid, inspectProcess(status.pid, mounts));
    const serving = statuses
      .filter((status) => status.state === 'ready' && status.generation === generation && status.pid !== null)
      .map((status) => facts.get(status.pid!)!);
    const certificates = this.sources.certificates();
    const bans = this.sources.bans();
    const refused = this.#refusals.top(TOP_REFUSED_CLIENTS, now);
    const state = {
      generatedAt: new Date(now).toISOString(),
      master: { pid: process.pid, generation, startedAt: new Date(this.#startedAt).toISOString(), config: config.source },
      checklist: evaluateChecklist(config, { now, workers: serving, certificates, auditLogFailing: this.sources.auditLogFailing() }),
      workers: statuses.map((status) => {
        const known = status.pid === null ? undefined : facts.get(status.pid);
        return {
          ...status,
          seccomp: known?.seccomp ?? null,
          noNewPrivs: known?.noNewPrivs ?? null,
          capEffective: known?.capEffective ?? null,
          root: known?.root ?? null,
          cgroup: known?.cgroup ?? null,
        };
      }),
      traffic: { windowSeconds: HISTORY_MS / 1000, buckets: this.#traffic.buckets() },
      connections: this.sources.openConnections(),
      refusedClients: refused.clients.map((client) => ({ ...client, lastAt: new Date(client.lastAt).toISOString() })),
      refusedUntracked: refused.untracked,
      bansTotal: bans.length,
      bans: bans.slice(0, LISTED_BANS).map((ban) => ({ ...ban, until: new Date(ban.until).toISOString() })),
      idsAlerts: this.#idsEvents.newestFirst(),
      auditEvents: this.#events.newestFirst(),
      certificates: certificates.map((certificate) => ({
        ...certificate,
        daysLeft: certificate.notAfter === null ? null : Math.floor((Date.parse(certificate.notAfter) - now) / DAY_MS),
      })),
      certificateError: this.sources.certificateError(),
      lastReload: this.#lastReload,
    };
    let json = JSON.stringify(state);
    // Events are what can grow: the oldest go first until the answer fits.
    while (Buffer.byteLength(json) > MAX_DASHBOARD_STATE_BYTES && (state.auditEvents.length > 0 || state.idsAlerts.length > 0)) {
      state.auditEvents = state.auditEvents.slice(0, Math.floor(state.auditEvents.length / 2));
      state.idsAlerts = state.idsAlerts.slice(0, Math.floor(state.idsAlerts.length / 2));
      json = JSON.stringify(state);
    }
    return json;
  }
}
