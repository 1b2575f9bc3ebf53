/**
 * The master's side of the IPC catalogue, just enough to drive one real
 * worker process (dist/src/worker/main.js, not sandboxed) from a test: it
 * binds the config's listeners, sends CFG_INIT, the listeners, whatever
 * startup messages the test gives, CFG_START; lets every connection in,
 * grants (or refuses) request tokens, and records audit events, metrics and
 * ACME_ACKs. Every message the worker sends is checked against the
 * catalogue, as the real master does: one outside it fails the test.
 *
 * For what the worker does with messages the master side does not send yet
 * (TLS_CERTS, ACME_CHALLENGES); the real master is tested through bin/.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { CompiledConfig } from '../../src/config/types.js';
import { parseWorkerMessage, type AuditEvent, type MasterMessage, type WorkerMessage } from '../../src/ipc/messages.js';
import { WORKER_ENV, WORKER_ENTRY } from '../../src/isolation/worker-command.js';
import { ListenerSet } from '../../src/master/listeners.js';
import { waitFor } from './harness.js';

export class FakeMaster {
  readonly audits: AuditEvent[] = [];
  readonly acks: number[] = [];
  /** Rejections by reason, summed over the worker's metric reports. */
  readonly rejections = new Map<string, number>();
  /** Responses by "status vhost", summed over the worker's metric reports. */
  readonly responses = new Map<string, number>();
  /** Messages outside the catalogue (the real master would kill the worker). */
  readonly invalid: unknown[] = [];
  /** false: every LIM_LEASE is refused, as a master whose bucket for the client is empty. */
  grantTokens = true;
  output = '';
  readonly exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    private readonly listeners: ListenerSet,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.on('message', (raw: unknown) => {
      const message = parseWorkerMessage(raw);
      if (message === null) this.invalid.push(raw);
      else this.receive(message);
    });
  }

  /** Starts a worker on `config`; `startup` goes between the listeners and CFG_START. Resolves once it is ready. */
  static async start(config: CompiledConfig, startup: readonly MasterMessage[] = []): Promise<FakeMaster> {
    const listeners = new ListenerSet();
    listeners.bindMissing(config.listeners);
    const child = fork(WORKER_ENTRY, [], {
      execPath: process.execPath,
      env: { ...WORKER_ENV },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    const master = new FakeMaster(child, listeners);
    let ready = false;
    child.on('message', (raw: { type?: unknown }) => {
      if (raw?.type === 'CTL_READY') ready = true;
    });
    master.post({ type: 'CFG_INIT', generation: 1, config });
    for (const listener of listeners.list())
      child.send({ type: 'CFG_LISTENER', listener: listener.spec } satisfies MasterMessage, listener.handle as unknown as Socket);
    for (const message of startup) master.post(message);
    master.post({ type: 'CFG_START' });
    await Promise.race([
      waitFor('the worker ready', () => ready, 10_000),
      master.exited.then((code) => Promise.reject(new Error(`worker exited with ${code}: ${master.output}`))),
    ]);
    return master;
  }

  post(message: MasterMessage): void {
    if (this.child.connected) this.child.send(message);
  }

  /** The metric count of rejections for `reason` reported so far. */
  rejected(reason: string): number {
    return this.rejections.get(reason) ?? 0;
  }

  async stop(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
    this.listeners.closeAll();
  }

  private receive(message: WorkerMessage): void {
    switch (message.type) {
      case 'LIM_CONNECT':
        this.post({ type: 'LIM_ADMIT', id: message.id, verdict: 'ok' });
        return;
      case 'LIM_LEASE':
        this.post(
          this.grantTokens
            ? { type: 'LIM_GRANT', id: message.id, granted: message.want, retryAfterMs: 0 }
            : { type: 'LIM_GRANT', id: message.id, granted: 0, retryAfterMs: 1000 },
        );
        return;
      case 'MET_SCRAPE':
        this.post({ type: 'MET_TEXT', id: message.id, text: '' });
        return;
      case 'MET_REPORT':
        for (const [reason, count] of message.rejections) this.rejections.set(reason, (this.rejections.get(reason) ?? 0) + count);
        for (const [vhost, status, count] of message.requests)
          this.responses.set(`${status} ${vhost}`, (this.responses.get(`${status} ${vhost}`) ?? 0) + count);
        return;
      case 'AUDIT_EVENT':
        this.audits.push(message.event);
        return;
      case 'ACME_ACK':
        this.acks.push(message.version);
        return;
      default:
        return;
    }
  }
}
