/**
 * The master's side of the channel, just enough to drive one real worker
 * process (dist/src/worker/main.js, not sandboxed) from a test: it binds
 * and listens on the config's listeners, spawns the worker with its channel
 * at fd 3 and the sockets after it, sends CFG_INIT, the listeners, whatever
 * startup messages the test gives, CFG_START; lets every connection in,
 * grants (or refuses) request tokens, answers pings, and records audit
 * events, metrics and ACME_ACKs. The channel is the master's own
 * (src/master/worker-channel.ts): a frame or message outside the catalogue
 * fails the test.
 *
 * For what the worker does with messages the master side does not send yet
 * (TLS_CERTS, ACME_CHALLENGES); the real master is tested through bin/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { CompiledConfig } from '../../src/config/types.js';
import type { AuditEvent, MasterMessage, WorkerMessage } from '../../src/ipc/messages.js';
import { CHANNEL_FD, WORKER_ENTRY, WORKER_ENV } from '../../src/isolation/worker-command.js';
import { ListenerSet } from '../../src/master/listeners.js';
import { WorkerChannel, type ChannelFault } from '../../src/master/worker-channel.js';
import { waitFor } from './harness.js';

export class FakeMaster {
  readonly audits: AuditEvent[] = [];
  readonly acks: number[] = [];
  /** Rejections by reason, summed over the worker's metric reports. */
  readonly rejections = new Map<string, number>();
  /** Responses by "status vhost", summed over the worker's metric reports. */
  readonly responses = new Map<string, number>();
  /** Faults of the channel (the real master would kill the worker). */
  readonly invalid: ChannelFault[] = [];
  /** false: every LIM_LEASE is refused, as a master whose bucket for the client is empty. */
  grantTokens = true;
  output = '';
  ready = false;
  readonly exited: Promise<number | null>;
  readonly channel: WorkerChannel;

  private constructor(
    readonly child: ChildProcess,
    private readonly listeners: ListenerSet,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.channel = new WorkerChannel(
      child.stdio[CHANNEL_FD] as Socket,
      (message) => this.receive(message),
      (fault) => this.invalid.push(fault),
    );
  }

  /** Starts a worker on `config`; `startup` goes between the listeners and CFG_START. Resolves once it is ready. */
  static async start(config: CompiledConfig, startup: readonly MasterMessage[] = []): Promise<FakeMaster> {
    const listeners = new ListenerSet();
    listeners.bindMissing(config.listeners);
    await listeners.listenBound();
    const bound = listeners.list();
    const child = spawn(process.execPath, [WORKER_ENTRY], {
      env: { ...WORKER_ENV },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', ...bound.map((listener) => listener.handle.fd)],
    });
    const master = new FakeMaster(child, listeners);
    master.post({ type: 'CFG_INIT', generation: 1, config });
    for (const [index, listener] of bound.entries())
      master.post({ type: 'CFG_LISTENER', listener: listener.spec, fd: CHANNEL_FD + 1 + index });
    for (const message of startup) master.post(message);
    master.post({ type: 'CFG_START' });
    await Promise.race([
      waitFor('the worker ready', () => master.ready, 10_000),
      master.exited.then((code) => Promise.reject(new Error(`worker exited with ${code}: ${master.output}`))),
    ]);
    return master;
  }

  post(message: MasterMessage): void {
    this.channel.send(message);
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
      case 'CTL_READY':
        this.ready = true;
        return;
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
