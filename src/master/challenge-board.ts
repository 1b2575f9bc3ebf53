/**
 * The ACME challenge answers the master publishes to its workers (RFC 8555
 * §8.3 HTTP-01, RFC 8737 TLS-ALPN-01). The master holds them; every worker
 * gets the whole set each time it changes (ACME_CHALLENGES) and confirms
 * with ACME_ACK. The CA is told to validate only once every ready worker of
 * the serving generation serves the answer: the CA may connect to any of
 * them. (A generation still starting got the set at its start.)
 */
import type { AlpnChallenge, MasterMessage } from '../ipc/messages.js';
import { IssuanceError, type ChallengeBoard } from '../tls/issuance/types.js';

/** How long workers get to confirm a new set. */
const PUBLISH_TIMEOUT_MS = 10_000;

/** A worker as the board sees it: something to post to, known by identity. */
export interface BoardWorker {
  post(message: MasterMessage): void;
}

export class WorkerChallengeBoard implements ChallengeBoard {
  readonly #http01 = new Map<string, string>();
  readonly #alpn = new Map<string, AlpnChallenge>();
  #version = 0;
  /** The highest version each worker confirmed. */
  readonly #acked = new WeakMap<BoardWorker, number>();
  #waiters: (() => void)[] = [];

  constructor(
    /** The workers that accept connections now (the serving generation). */
    private readonly serving: () => BoardWorker[],
    /** Every live worker, draining ones included. */
    private readonly everyWorker: () => BoardWorker[],
  ) {}

  setHttp01(token: string, keyAuthorization: string): void {
    this.#http01.set(token, keyAuthorization);
  }

  clearHttp01(token: string): void {
    this.#http01.delete(token);
  }

  setTlsAlpn01(name: string, certPem: string, keyPem: string): void {
    this.#alpn.set(name, { name, certPem, keyPem });
  }

  clearTlsAlpn01(name: string): void {
    this.#alpn.delete(name);
  }

  /** The current set, for a worker that starts now (it confirms it like any other). */
  message(): Extract<MasterMessage, { type: 'ACME_CHALLENGES' }> {
    return { type: 'ACME_CHALLENGES', version: this.#version, http01: [...this.#http01], tlsAlpn01: [...this.#alpn.values()] };
  }

  /** Sends the current set to every worker; resolves once every serving worker confirmed it. */
  async publish(): Promise<void> {
    this.#version += 1;
    const version = this.#version;
    const message = this.message();
    for (const worker of this.everyWorker()) worker.post(message);
    const confirmed = (): boolean => {
      const workers = this.serving();
      return workers.length > 0 && workers.every((worker) => (this.#acked.get(worker) ?? -1) >= version);
    };
    const deadline = Date.now() + PUBLISH_TIMEOUT_MS;
    while (!confirmed()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new IssuanceError('the workers did not confirm the challenge answers in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 500));
        timer.unref();
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** ACME_ACK from `worker`; false for a version never sent (the worker is lying or broken). */
  acknowledge(worker: BoardWorker, version: number): boolean {
    if (version > this.#version) return false;
    this.#acked.set(worker, Math.max(version, this.#acked.get(worker) ?? -1));
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
    return true;
  }
}
