/**
 * The worker's side of the server-wide limits and bans the master holds
 * (src/master/abuse/): questions that wait for an answer (may this
 * connection in? how many request tokens for this client?), reports that do
 * not (connections closed, tokens unspent, IDS matches), and the ban list
 * the master keeps every worker's copy of.
 *
 * Reports are batched per event-loop turn: a busy worker closing a thousand
 * connections sends a few messages, not a thousand.
 */
import { MAX_BATCH_ENTRIES, type ConnectVerdict, type MasterMessage, type WorkerMessage } from '../ipc/messages.js';

export interface TokenGrant {
  readonly granted: number;
  readonly retryAfterMs: number;
}

/** What the worker's servers ask and tell the master, besides audit events. */
export interface MasterPort {
  admit(ip: string): Promise<ConnectVerdict>;
  closed(ip: string): void;
  lease(ip: string, want: number): Promise<TokenGrant>;
  report(ip: string, unspent: number, refused: number): void;
  idsMatch(ip: string, rule: string, score: number): void;
  isBanned(ip: string): boolean;
  /** False while no client is banned: the per-request check can skip computing the client's key. */
  anyBans(): boolean;
  /** The Prometheus text, totalled over all workers by the master. */
  scrape(): Promise<string>;
  sendMetrics(report: Extract<WorkerMessage, { type: 'MET_REPORT' }>): void;
  /** The dashboard's state (JSON text) from the master; callers while one is asked share its answer (one DASH_QUERY at a time). */
  dashboardState(): Promise<string>;
}

export class MasterLink implements MasterPort {
  #nextId = 1;
  readonly #admissions = new Map<number, (verdict: ConnectVerdict) => void>();
  readonly #leases = new Map<number, (grant: TokenGrant) => void>();
  readonly #scrapes = new Map<number, (text: string) => void>();
  /** The DASH_QUERY waiting for its DASH_STATE: never more than one (the master ends a worker that asks twice). */
  #dashboardQuery: { id: number; answer: Promise<string>; resolve: (json: string) => void } | null = null;
  /** Client -> epoch ms the ban ends. */
  readonly #bans = new Map<string, number>();
  #closed: string[] = [];
  #reports: [string, number, number][] = [];
  #flushScheduled = false;

  /** The scrape being answered: one at a time (the master allows no more), shared by whoever asks meanwhile. */
  #scrape: Promise<string> | null = null;

  constructor(private readonly send: (message: WorkerMessage) => unknown) {}

  /** Handles the master's limit and ban messages; false for any other message. */
  receive(message: MasterMessage): boolean {
    switch (message.type) {
      case 'LIM_ADMIT': {
        const resolve = this.#admissions.get(message.id);
        this.#admissions.delete(message.id);
        resolve?.(message.verdict);
        return true;
      }
      case 'LIM_GRANT': {
        const resolve = this.#leases.get(message.id);
        this.#leases.delete(message.id);
        resolve?.({ granted: message.granted, retryAfterMs: message.retryAfterMs });
        return true;
      }
      case 'MET_TEXT': {
        const resolve = this.#scrapes.get(message.id);
        this.#scrapes.delete(message.id);
        resolve?.(message.text);
        return true;
      }
      case 'DASH_STATE': {
        const query = this.#dashboardQuery;
        if (query?.id !== message.id) return true;
        this.#dashboardQuery = null;
        query.resolve(message.json);
        return true;
      }
      case 'BAN_SYNC':
        this.#bans.clear();
        for (const [ip, until] of message.bans) this.#bans.set(ip, until);
        return true;
      case 'BAN_ADD':
        this.#bans.set(message.ip, message.until);
        return true;
      case 'BAN_LIFT':
        this.#bans.delete(message.ip);
        return true;
      default:
        return false;
    }
  }

  admit(ip: string): Promise<ConnectVerdict> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#admissions.set(id, resolve);
      this.send({ type: 'LIM_CONNECT', id, ip });
    });
  }

  lease(ip: string, want: number): Promise<TokenGrant> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#leases.set(id, resolve);
      this.send({ type: 'LIM_LEASE', id, ip, want });
    });
  }

  scrape(): Promise<string> {
    if (this.#scrape !== null) return this.#scrape;
    const id = this.#nextId++;
    this.#scrape = new Promise((resolve) => {
      this.#scrapes.set(id, (text) => {
        this.#scrape = null;
        resolve(text);
      });
      this.send({ type: 'MET_SCRAPE', id });
    });
    return this.#scrape;
  }

  sendMetrics(report: Extract<WorkerMessage, { type: 'MET_REPORT' }>): void {
    this.send(report);
  }

  dashboardState(): Promise<string> {
    if (this.#dashboardQuery !== null) return this.#dashboardQuery.answer;
    const id = this.#nextId++;
    let resolve: (json: string) => void = () => undefined;
    const answer = new Promise<string>((settle) => (resolve = settle));
    this.#dashboardQuery = { id, answer, resolve };
    this.send({ type: 'DASH_QUERY', id });
    return answer;
  }

  closed(ip: string): void {
    this.#closed.push(ip);
    this.#scheduleFlush();
  }

  report(ip: string, unspent: number, refused: number): void {
    this.#reports.push([ip, unspent, refused]);
    this.#scheduleFlush();
  }

  idsMatch(ip: string, rule: string, score: number): void {
    this.send({ type: 'IDS_MATCH', ip, rule, score });
  }

  anyBans(): boolean {
    return this.#bans.size > 0;
  }

  isBanned(ip: string): boolean {
    const until = this.#bans.get(ip);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#bans.delete(ip);
    return false;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      // Reports first: the master takes reports from clients this worker holds (or just held) a connection from.
      for (let i = 0; i < this.#reports.length; i += MAX_BATCH_ENTRIES)
        this.send({ type: 'LIM_REPORT', entries: this.#reports.slice(i, i + MAX_BATCH_ENTRIES) });
      for (let i = 0; i < this.#closed.length; i += MAX_BATCH_ENTRIES)
        this.send({ type: 'LIM_CLOSED', ips: this.#closed.slice(i, i + MAX_BATCH_ENTRIES) });
      this.#closed = [];
      this.#reports = [];
    });
  }
}

/**
 * For the worker code run without a master (bench/pipeline-server.ts): lets
 * every connection in, grants every token, keeps no metrics. Never used by
 * the server.
 */
export const UNLIMITED: MasterPort = {
  admit: () => Promise.resolve('ok'),
  closed: () => undefined,
  lease: (_ip, want) => Promise.resolve({ granted: want, retryAfterMs: 0 }),
  report: () => undefined,
  idsMatch: () => undefined,
  isBanned: () => false,
  anyBans: () => false,
  scrape: () => Promise.resolve(''),
  sendMetrics: () => undefined,
  dashboardState: () => Promise.resolve('{}'),
};
