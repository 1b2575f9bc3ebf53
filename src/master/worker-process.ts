/**
 * One worker process as the master sees it: the sandbox helper spawned with
 * the worker's channel at fd 3 (an AF_UNIX socketpair; worker-channel.ts)
 * and its listening sockets after it, fed its generation's config over the
 * channel, and watched until it exits. Its stdout/stderr are pipes into the
 * master's log sink (worker-output.ts).
 *
 * The worker is taken to be compromised. Whatever it sends that breaks the
 * channel's rules or a budget is a verdict (`condemn`): the channel closes,
 * nothing it sent after is honoured, it gets SIGKILL, and the supervisor
 * writes one audit event naming it. The same happens to a worker that stops
 * answering CTL_PING (stopped, spinning, deadlocked) for UNRESPONSIVE_AFTER_MS.
 * (Over 400 lines: one process's life from spawn to exit, every verdict on
 * its channel included, read top to bottom.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { ACCESS_LOG_FD } from '../ipc/access-log.js';
import type { Logger } from 'pino';
import { forWorkers, type CompiledConfig } from '../config/types.js';
import {
  CHANNEL_FD,
  FIRST_LISTENER_FD,
  HELPER_EXIT_CANNOT_SANDBOX,
  HELPER_EXIT_USAGE,
  type WorkerCommand,
} from '../isolation/worker-command.js';
import type { AuditEvent, MasterMessage, WorkerMessage } from '../ipc/messages.js';
import type { LogSink } from '../logging/logger.js';
import type { BoundListener } from './listeners.js';
import { WorkerChannel } from './worker-channel.js';
import { readBoundedLines, withIdentity } from './worker-output.js';

export type WorkerState = 'starting' | 'ready' | 'draining' | 'exited';

export interface WorkerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Why the master ended it, if it did. */
  readonly reason: string | null;
}

/**
 * Why the master killed a worker for what it did: broke the channel's rules
 * (`protocol`), asked for more than its budget (`budget`), or stopped
 * answering (`liveness`). `rule` is a stable code (docs/security.md).
 */
export interface Verdict {
  readonly kind: 'protocol' | 'budget' | 'liveness';
  readonly rule: string;
  readonly detail: string;
}

/** Extra time after a drain deadline before the master stops asking. */
const DRAIN_GRACE_MS = 2000;
/** How often a ready worker is asked to answer. */
const PING_INTERVAL_MS = 1000;
/** A ping unanswered this long, or a frame begun and not finished this long, ends the worker. */
export const UNRESPONSIVE_AFTER_MS = 5000;
/**
 * A ping unanswered this long and the worker's slot gets no new connections
 * (listeners.ts) until it answers: an event loop that stalls (a long
 * synchronous task, a stop) does not accept either, and what is steered to
 * its socket would wait.
 */
const STEER_AWAY_AFTER_MS = 1500;

type Forwarded = Exclude<WorkerMessage, { type: 'CTL_READY' | 'CTL_PONG' | 'AUDIT_EVENT' }>;

export class WorkerProcess {
  readonly child: ChildProcess;
  readonly channel: WorkerChannel;
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
  onMessage: (message: Forwarded) => void = () => undefined;
  /** Called once when the worker is condemned (set by the supervisor: the audit event, the bans it caused). */
  onVerdict: (verdict: Verdict) => void = () => undefined;
  /** Called when `responsive` changes (set by the supervisor: new connections are steered by it). */
  onResponsiveness: () => void = () => undefined;
  /** Answers its pings in time (STEER_AWAY_AFTER_MS): its event loop turns, so it accepts. */
  responsive = true;
  #verdict: Verdict | null = null;
  private readonly becameReady: () => void;
  private killReason: string | null = null;
  private readyTimer: NodeJS.Timeout | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  private readonly pingTimer: NodeJS.Timeout;
  /** Pings sent and not yet answered: seq -> performance.now() when sent. */
  private readonly pings = new Map<number, number>();
  private pingSeq = 0;

  constructor(
    readonly slot: number,
    readonly generation: number,
    readonly restarts: number,
    /** The worker's own cgroup (relative path), or null. */
    readonly cgroup: string | null,
    /** The uid it runs as: its own, or the operator's run_as_user (null until read back from /proc). */
    readonly uid: number | null,
    command: WorkerCommand,
    readonly config: CompiledConfig,
    listeners: readonly BoundListener[],
    private readonly log: Logger,
    sink: LogSink,
    /** Sent after the config and listeners, before CFG_START (the bans in force). */
    startup: readonly MasterMessage[] = [],
  ) {
    // fd 3: the channel ('pipe' is a socketpair in libuv); fd 4: the access log pipe when there is an
    // access log file (src/ipc/access-log.ts); fd 5...: the listening sockets, in `listeners` order.
    this.child = spawn(command.file, command.args, {
      env: command.env,
      stdio: [
        'ignore',
        'pipe',
        'pipe',
        'pipe',
        config.server.accessLogFile === null ? 'ignore' : 'pipe',
        ...listeners.map((listener) => listener.handle.fd),
      ],
    });
    this.forwardOutput(sink);
    this.channel = new WorkerChannel(
      this.child.stdio[CHANNEL_FD] as Socket,
      (message) => this.receive(message),
      (fault) => this.condemn({ kind: 'protocol', ...fault }),
    );

    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.state = 'exited';
        this.clearTimers();
        this.channel.close();
        resolve({ code, signal, reason: this.killReason });
      });
    });
    let becameReady: () => void = () => undefined;
    this.ready = new Promise((resolve, reject) => {
      becameReady = resolve;
      this.readyTimer = setTimeout(() => {
        this.kill(`not ready after ${config.server.workerReadyTimeoutMs} ms`);
      }, config.server.workerReadyTimeoutMs);
      void this.exited.then((exit) => {
        const why = exit.reason ?? this.lastError ?? `exited with ${exit.signal ?? `code ${exit.code}`}`;
        reject(new Error(why));
      });
    });
    this.becameReady = becameReady;
    this.ready.catch(() => undefined);
    this.child.on('error', (error) => this.log.error({ err: error, slot }, 'worker process error'));
    this.pingTimer = setInterval(() => this.checkLiveness(), PING_INTERVAL_MS);
    this.pingTimer.unref();

    // Nothing but a ping until the worker has answered it and been checked
    // (confirmSandboxed): the config, the keys and the rest wait in `held`.
    this.pings.set(0, performance.now());
    this.channel.send({ type: 'CTL_PING', seq: 0 });
    // Never the issuance credentials: a worker has no use for them.
    this.post({ type: 'CFG_INIT', generation, config: forWorkers(config) });
    for (const [index, listener] of listeners.entries())
      this.post({ type: 'CFG_LISTENER', listener: listener.spec, fd: FIRST_LISTENER_FD + index });
    for (const message of startup) this.post(message);
    this.post({ type: 'CFG_START' });
  }

  /** Messages for the worker kept until its first answer was checked; null once they went out. */
  private held: { message: MasterMessage; onFlushed?: () => void }[] | null = [];

  /** The worker's end of the access log pipe, read by the master (null without an access log file). */
  get accessLog(): Readable | null {
    return (this.child.stdio[ACCESS_LOG_FD] as Readable | null | undefined) ?? null;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The verdict that ended this worker, if one did. */
  get verdict(): Verdict | null {
    return this.#verdict;
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
    this.post({ type: 'CTL_DRAIN', deadlineMs });
    this.drainTimer = setTimeout(
      () => this.kill(`still running ${deadlineMs + DRAIN_GRACE_MS} ms after drain`),
      deadlineMs + DRAIN_GRACE_MS,
    );
  }

  /** Ended by the master for its own reasons (start failed, drain deadline): no verdict on the worker. */
  kill(reason: string): void {
    if (this.state === 'exited') return;
    this.killReason ??= reason;
    this.log.warn({ slot: this.slot, workerPid: this.pid, generation: this.generation, reason }, 'killing worker');
    this.channel.close();
    this.child.kill('SIGKILL');
  }

  /**
   * The worker broke a rule: its channel closes (nothing it sent from now
   * on, or had sent after the offending message, is honoured), it gets
   * SIGKILL, and `onVerdict` runs once. Later verdicts are ignored.
   */
  condemn(verdict: Verdict): void {
    if (this.#verdict !== null || this.state === 'exited') return;
    this.#verdict = verdict;
    this.channel.close();
    this.killReason ??= `${verdict.rule}: ${verdict.detail}`;
    this.log.warn(
      {
        slot: this.slot,
        workerPid: this.pid,
        workerUid: this.uid,
        generation: this.generation,
        rule: verdict.rule,
        detail: verdict.detail,
      },
      'killing worker: it broke the rules of its channel',
    );
    this.child.kill('SIGKILL');
    this.onVerdict(verdict);
  }

  post(message: MasterMessage, onFlushed?: () => void): void {
    if (this.held !== null) this.held.push({ message, onFlushed });
    else this.channel.send(message, onFlushed);
  }

  /**
   * The worker's first answer: it runs node's event loop now, past the
   * sandbox's preloaded shim. Before it gets its config and keys, check
   * what the helper promised (native-helpers/SECURITY.md): the process is
   * non-dumpable (its /proc files are root's, so no process of its uid can
   * read its memory or ptrace it) and nobody traces it. A worker that fails
   * is ended before it holds a secret.
   */
  private confirmSandboxed(): void {
    const held = this.held;
    if (held === null) return;
    const problem = this.pid === undefined ? 'no pid' : sandboxProblem(this.pid);
    if (problem !== null) {
      this.condemn({ kind: 'protocol', rule: 'sandbox.unconfirmed', detail: problem });
      return;
    }
    this.held = null;
    for (const { message, onFlushed } of held) this.channel.send(message, onFlushed);
  }

  private receive(message: WorkerMessage): void {
    switch (message.type) {
      case 'AUDIT_EVENT':
        this.onAudit(message.event);
        return;
      case 'CTL_PONG': {
        const sentAt = this.pings.get(message.seq);
        if (sentAt === undefined) {
          this.condemn({ kind: 'protocol', rule: 'message.out_of_turn', detail: `CTL_PONG ${message.seq}, never asked` });
          return;
        }
        // Answers come in order: this one answers every earlier ping too.
        for (const seq of this.pings.keys()) if (seq <= message.seq) this.pings.delete(seq);
        this.confirmSandboxed();
        this.setResponsive(true);
        return;
      }
      case 'CTL_READY':
        if (message.generation !== this.generation || this.state !== 'starting' || this.held !== null) {
          this.condemn({ kind: 'protocol', rule: 'message.out_of_turn', detail: `CTL_READY for generation ${message.generation}` });
          return;
        }
        this.state = 'ready';
        // It read everything sent before CFG_START: from now on an unread queue is its fault.
        this.channel.limitOutbound = true;
        if (this.readyTimer) clearTimeout(this.readyTimer);
        this.becameReady();
        return;
      default:
        this.onMessage(message);
    }
  }

  /**
   * Once a second, for a ready worker: a frame begun UNRESPONSIVE_AFTER_MS
   * ago and not finished, a ping unanswered that long, or a stopped process
   * (state T in /proc/<pid>/stat, SIGSTOP) with a ping unanswered, ends it.
   */
  private checkLiveness(): void {
    if (this.state !== 'ready' || this.#verdict !== null) return;
    const now = performance.now();
    const partial = this.channel.partialFrameSince;
    if (partial !== null && now - partial >= UNRESPONSIVE_AFTER_MS) {
      this.condemn({
        kind: 'protocol',
        rule: 'frame.stalled',
        detail: `a frame begun ${Math.round(now - partial)} ms ago is still not complete`,
      });
      return;
    }
    let oldest: number | null = null;
    for (const sentAt of this.pings.values()) oldest = oldest === null ? sentAt : Math.min(oldest, sentAt);
    if (oldest !== null) {
      const silentMs = Math.round(now - oldest);
      if (silentMs >= STEER_AWAY_AFTER_MS) this.setResponsive(false);
      const state = this.pid === undefined ? null : processState(this.pid);
      if (state === 'T' || state === 't') {
        this.condemn({ kind: 'liveness', rule: 'liveness.stopped', detail: `stopped (state ${state}), silent for ${silentMs} ms` });
        return;
      }
      if (silentMs >= UNRESPONSIVE_AFTER_MS) {
        this.condemn({
          kind: 'liveness',
          rule: 'liveness.unresponsive',
          detail: `no answer for ${silentMs} ms (state ${state ?? 'gone'})`,
        });
        return;
      }
    }
    const seq = ++this.pingSeq;
    this.pings.set(seq, now);
    this.post({ type: 'CTL_PING', seq });
  }

  private setResponsive(responsive: boolean): void {
    if (this.responsive === responsive) return;
    this.responsive = responsive;
    this.onResponsiveness();
  }

  private clearTimers(): void {
    if (this.readyTimer) clearTimeout(this.readyTimer);
    if (this.drainTimer) clearTimeout(this.drainTimer);
    clearInterval(this.pingTimer);
  }

  private forwardOutput(sink: LogSink): void {
    if (this.child.stdout) {
      readBoundedLines(this.child.stdout, (line, truncated) => {
        // Worker loggers write JSON lines; the master appends who wrote them, and wraps anything else.
        const tagged = truncated ? null : withIdentity(line, { role: 'worker', pid: this.pid ?? 0, slot: this.slot });
        if (tagged !== null) sink.write(`${tagged}\n`);
        else this.wrap(sink, 30, line, truncated);
      });
    }
    if (this.child.stderr) {
      readBoundedLines(this.child.stderr, (line, truncated) => {
        if (line.trim() === '') return;
        this.lastError = line.slice(0, 500);
        this.wrap(sink, 50, line, truncated);
      });
    }
  }

  private wrap(sink: LogSink, level: number, line: string, truncated: boolean): void {
    const entry = {
      level,
      time: new Date().toISOString(),
      role: 'worker',
      pid: this.pid,
      slot: this.slot,
      msg: line.slice(0, 4096),
      ...(truncated && { truncated: true }),
    };
    sink.write(`${JSON.stringify(entry)}\n`);
  }
}

/** Why `pid` is not a sandboxed worker as the helper leaves one (dumpable, or traced), or null. */
function sandboxProblem(pid: number): string | null {
  try {
    // A non-dumpable process's /proc/<pid>/* files belong to root (proc(5), /proc/pid: "dumpable").
    const owner = statSync(`/proc/${pid}/mem`).uid;
    if (owner !== 0) return `dumpable: /proc/${pid}/mem belongs to uid ${owner}`;
    const tracer = /^TracerPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    if (tracer !== '0') return `traced by pid ${tracer ?? '?'}`;
    return null;
  } catch (error) {
    return `cannot read /proc/${pid}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
}

/** The state letter of /proc/<pid>/stat, or null when it cannot be read. */
function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2) || null;
  } catch {
    return null;
  }
}

/** The real uid of a process, from /proc (what `status` shows for each worker). */
export function processUid(pid: number): number | null {
  try {
    const match = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
