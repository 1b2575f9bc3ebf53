/**
 * One worker process as the master sees it: spawned through `fork` (whose
 * execPath lets the sandbox helper stand in front of node), fed its
 * generation's config and listening sockets over IPC, and watched until it
 * exits. Its stdout/stderr are pipes into the master's log sink.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { ACCESS_LOG_FD } from '../ipc/access-log.js';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { forWorkers, type CompiledConfig } from '../config/types.js';
import { HELPER_EXIT_CANNOT_SANDBOX, HELPER_EXIT_USAGE, WORKER_ENTRY, type WorkerCommand } from '../isolation/worker-command.js';
import { parseWorkerMessage, type AuditEvent, type MasterMessage, type WorkerMessage } from '../ipc/messages.js';
import type { LogSink } from '../logging/logger.js';
import type { BoundListener } from './listeners.js';

export type WorkerState = 'starting' | 'ready' | 'draining' | 'exited';

export interface WorkerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Why the master ended it, if it did. */
  readonly reason: string | null;
}

/** Extra time after a drain deadline before the master stops asking. */
const DRAIN_GRACE_MS = 2000;

export class WorkerProcess {
  readonly child: ChildProcess;
  state: WorkerState = 'starting';
  readonly startedAt = Date.now();
  /** Resolves when the worker reports ready; rejects if it exits or times out first. */
  readonly ready: Promise<void>;
  readonly exited: Promise<WorkerExit>;
  /** The last line the worker wrote to stderr: the best reason a failed start can give. */
  lastError: string | null = null;
  /** Memory or CPU above its limit since this time (monitoring), else null. */
  overLimitSince: number | null = null;
  /** Where this worker's audit events go (set by the supervisor). */
  onAudit: (event: AuditEvent) => void = () => undefined;
  /** Where its questions and reports (limits, bans, IDS scores, metrics) go (set by the supervisor). */
  onMessage: (message: Exclude<WorkerMessage, { type: 'CTL_READY' | 'AUDIT_EVENT' }>) => void = () => undefined;
  private killReason: string | null = null;
  private readyTimer: NodeJS.Timeout | null = null;
  private drainTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly slot: number,
    readonly generation: number,
    readonly restarts: number,
    /** The worker's own cgroup (relative path), or null. */
    readonly cgroup: string | null,
    command: WorkerCommand,
    config: CompiledConfig,
    listeners: readonly BoundListener[],
    private readonly log: Logger,
    sink: LogSink,
    /** Sent after the config and listeners, before CFG_START (the bans in force). */
    startup: readonly MasterMessage[] = [],
  ) {
    this.child = fork(WORKER_ENTRY, [], {
      execPath: command.execPath,
      execArgv: command.execArgv,
      env: command.env,
      // fd 4: the access log pipe (src/ipc/access-log.ts), when there is an access log file.
      stdio: ['ignore', 'pipe', 'pipe', 'ipc', config.server.accessLogFile === null ? 'ignore' : 'pipe'],
      serialization: 'json',
    });
    this.forwardOutput(sink);

    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.state = 'exited';
        this.clearTimers();
        resolve({ code, signal, reason: this.killReason });
      });
    });
    this.ready = new Promise((resolve, reject) => {
      this.readyTimer = setTimeout(() => {
        this.kill(`not ready after ${config.server.workerReadyTimeoutMs} ms`);
      }, config.server.workerReadyTimeoutMs);
      this.child.on('message', (raw: unknown) => {
        const message = parseWorkerMessage(raw);
        if (message === null) {
          this.kill('sent a message outside the IPC catalogue');
          return;
        }
        if (message.type === 'AUDIT_EVENT') {
          this.onAudit(message.event);
          return;
        }
        if (message.type !== 'CTL_READY') {
          this.onMessage(message);
          return;
        }
        if (message.generation !== generation || this.state !== 'starting') {
          this.kill('reported ready out of turn');
          return;
        }
        this.state = 'ready';
        if (this.readyTimer) clearTimeout(this.readyTimer);
        resolve();
      });
      void this.exited.then((exit) => {
        const why = exit.reason ?? this.lastError ?? `exited with ${exit.signal ?? `code ${exit.code}`}`;
        reject(new Error(why));
      });
    });
    this.ready.catch(() => undefined);
    this.child.on('error', (error) => this.log.error({ err: error, slot }, 'worker process error'));

    // Never the issuance credentials: a worker has no use for them.
    this.send({ type: 'CFG_INIT', generation, config: forWorkers(config) });
    for (const listener of listeners) this.send({ type: 'CFG_LISTENER', listener: listener.spec }, listener.handle);
    for (const message of startup) this.send(message);
    this.send({ type: 'CFG_START' });
  }

  /** The worker's end of the access log pipe, read by the master (null without an access log file). */
  get accessLog(): Readable | null {
    return (this.child.stdio[ACCESS_LOG_FD] as Readable | null | undefined) ?? null;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * The sandbox helper could not apply a setting (or was misused): starting
   * this worker again would fail the same way, so it must not be respawned.
   */
  static cannotSandbox(exit: WorkerExit): boolean {
    return exit.reason === null && (exit.code === HELPER_EXIT_CANNOT_SANDBOX || exit.code === HELPER_EXIT_USAGE);
  }

  /** Stop accepting, finish in-flight requests, exit; killed if still there after the deadline. */
  drain(deadlineMs: number): void {
    if (this.state === 'exited' || this.state === 'draining') return;
    this.state = 'draining';
    if (this.readyTimer) clearTimeout(this.readyTimer);
    this.send({ type: 'CTL_DRAIN', deadlineMs });
    this.drainTimer = setTimeout(
      () => this.kill(`still running ${deadlineMs + DRAIN_GRACE_MS} ms after drain`),
      deadlineMs + DRAIN_GRACE_MS,
    );
  }

  kill(reason: string): void {
    if (this.state === 'exited') return;
    this.killReason ??= reason;
    this.log.warn({ slot: this.slot, workerPid: this.pid, generation: this.generation, reason }, 'killing worker');
    this.child.kill('SIGKILL');
  }

  post(message: MasterMessage): void {
    this.send(message);
  }

  private send(message: MasterMessage, handle?: BoundListener['handle']): void {
    if (!this.child.connected) return;
    // A raw bound handle is sent as 'net.Native'; node's typings only name Socket/Server.
    this.child.send(message, handle as unknown as Socket | undefined, (error) => {
      if (error && this.state !== 'exited') this.log.warn({ err: error, slot: this.slot }, 'IPC send failed');
    });
  }

  private clearTimers(): void {
    if (this.readyTimer) clearTimeout(this.readyTimer);
    if (this.drainTimer) clearTimeout(this.drainTimer);
  }

  private forwardOutput(sink: LogSink): void {
    if (this.child.stdout) {
      createInterface({ input: this.child.stdout, crlfDelay: Infinity }).on('line', (line) => {
        // Worker loggers write JSON lines; anything else is wrapped so the stream stays JSON.
        if (line.startsWith('{') && line.endsWith('}')) sink.write(`${line}\n`);
        else this.wrap(sink, 30, line);
      });
    }
    if (this.child.stderr) {
      createInterface({ input: this.child.stderr, crlfDelay: Infinity }).on('line', (line) => {
        if (line.trim() === '') return;
        this.lastError = line.slice(0, 500);
        this.wrap(sink, 50, line);
      });
    }
  }

  private wrap(sink: LogSink, level: number, line: string): void {
    const entry = { level, time: new Date().toISOString(), role: 'worker', pid: this.pid, slot: this.slot, msg: line.slice(0, 4096) };
    sink.write(`${JSON.stringify(entry)}\n`);
  }
}
