/**
 * The supervisor: worker generations, crash replacement with backoff,
 * staged reload and graceful stop. (Over 400 lines: a generation's whole
 * life, spawn to retirement, reads best in one file; what the master does
 * with each worker's messages is worker-desk.ts.)
 *
 * A generation is one config and the N workers started for it. Reload is
 * staged: validate, bind what the new config adds, start the new
 * generation, wait until every new worker is ready, and only then retire the
 * old one. Any failure before the switch leaves the running generation and
 * its listeners exactly as they were.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pidusage from 'pidusage';
import type { Logger } from 'pino';
import { htpasswdFiles, readHtpasswd, type HtpasswdEntries } from '../config/htpasswd.js';
import type { CompiledConfig } from '../config/types.js';
import type { AccessLogFile } from './access-log-file.js';
import { applyIoWeight, removeCgroup } from '../isolation/cgroups.js';
import { implicitJail, makeImplicitJail } from '../isolation/jail.js';
import { CHANNEL_FD, FIRST_LISTENER_FD, workerCommand, workerIdentity } from '../isolation/worker-command.js';
import { ACCESS_LOG_FD } from '../ipc/access-log.js';
import { WorkerUids } from '../isolation/worker-uids.js';
import type { MasterMessage } from '../ipc/messages.js';
import type { LogSink } from '../logging/logger.js';
import type { CertificateInfo, LoadedCertificate } from '../tls/certificates.js';
import { loadTlsMaterial, materialOf, type CertificateMaterial } from '../tls/material.js';
import type { AbuseControl } from './abuse/index.js';
import type { AuditLog } from './audit-log.js';
import type { BindChange, ListenerSet } from './listeners.js';
import type { Metrics } from './metrics.js';
import type { CertificateManager, PreparedIssuance } from './certificate-manager.js';
import { WorkerChallengeBoard } from './challenge-board.js';
import type { SessionTickets } from './session-tickets.js';
import { type DashboardDesk, WorkerDesk } from './worker-desk.js';
import { processUid, WorkerProcess } from './worker-process.js';

/** A worker that lived less than this counts towards a crash loop. */
const CRASH_LOOP_WINDOW_MS = 10_000;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 30_000;
/** How often worker memory and CPU are sampled against the limits. */
const MONITOR_INTERVAL_MS = 1000;
/**
 * With cgroups on, a worker cannot exceed its limits: the kernel throttles
 * CPU at the quota and OOM-kills at the memory limit. "Above the limit" is
 * therefore "at it": this share of max_memory, or of max_cpu_percent.
 */
const MEMORY_ALARM_SHARE = 0.9;
const CPU_ALARM_SHARE = 0.95;
/**
 * After a reload lowers `workers`, the old workers of the slots it drops go
 * on accepting this long before they drain: new connections are steered
 * away from their sockets at once, but what is queued there, and handshakes
 * begun before (the SYN came, the ACK has not), still land on them.
 */
const RETIRED_SLOT_ACCEPT_MS = 1000;
/** How long a dead worker's cgroup may stay busy (its last threads exiting). */
const CGROUP_REMOVE_ATTEMPTS = 20;

/** A generation's certificates and keys, or null without TLS: manual ones read once per generation, issued ones replaced as they are renewed. */
type GenerationTls = { certificates: CertificateMaterial[] } | null;

interface Slot {
  worker: WorkerProcess | null;
  readonly tls: GenerationTls;
  /** The generation's htpasswd lines, read once for all its workers (and their replacements). */
  readonly htpasswd: CompiledConfig['htpasswd'];
  restarts: number;
  /** Crashes in a row of workers that died young. */
  quickCrashes: number;
  respawnTimer: NodeJS.Timeout | null;
}

export interface WorkerStatus {
  pid: number | null;
  uid: number | null;
  slot: number;
  generation: number;
  state: string;
  uptimeSeconds: number;
  restarts: number;
  rssBytes: number | null;
  cpuPercent: number | null;
}

export type ReloadOutcome = { ok: true; generation: number } | { ok: false; reason: string };

export class Supervisor {
  generation = 0;
  private slots: Slot[] = [];
  /** Every live worker process, whatever its generation. */
  private readonly workers = new Set<WorkerProcess>();
  private reloading = false;
  private stopping = false;
  /** Spawns so far: part of each worker's cgroup name. */
  private spawned = 0;
  private ioWeightUnsupportedLogged = false;
  private readonly monitor: NodeJS.Timeout;
  /** Root-only directory for files the helper reads (a custom seccomp list). */
  private readonly privateDir = mkdtempSync(path.join(tmpdir(), 'miwidothttp-'));
  /** A uid per worker, when run_as_user is unset (src/isolation/worker-uids.ts). */
  private readonly uids: WorkerUids;

  constructor(
    public config: CompiledConfig,
    private readonly listeners: ListenerSet,
    private readonly log: Logger,
    private readonly sink: LogSink,
    audit: AuditLog,
    private readonly abuse: AbuseControl,
    private readonly metrics: Metrics,
    private readonly tickets: SessionTickets,
    private readonly issued: CertificateManager,
    dashboard: DashboardDesk,
    private readonly accessLog: AccessLogFile,
  ) {
    this.accessLog.use(config.server.accessLogFile);
    this.uids = new WorkerUids(config.isolation.workerUidBase);
    this.desk = new WorkerDesk({ abuse, metrics, audit, log, listeners, dashboard, challenges: this.challenges });
    this.monitor = setInterval(() => {
      void this.checkResources();
      this.desk.reportSuppressedAudit();
    }, MONITOR_INTERVAL_MS);
    this.monitor.unref();
  }

  /** Start the first generation; rejects with the first worker's reason if any fails to come up. */
  async start(): Promise<void> {
    this.listeners.bindMissing(this.config.listeners, this.config.server.workerCount);
    await this.listeners.listenBound(null);
    const generation = ++this.generation;
    const slots = this.spawnGeneration(generation, this.config);
    try {
      await Promise.all(slots.map((slot) => slot.worker!.ready));
    } catch (error) {
      for (const slot of slots) slot.worker?.kill('start failed');
      throw error;
    }
    this.slots = slots;
    this.commitCertificates();
  }

  /** Validate-then-switch reload; `load` is the same load path `start` used. */
  async reload(load: () => { ok: true; config: CompiledConfig } | { ok: false; errors: string[] }): Promise<ReloadOutcome> {
    if (this.stopping) return { ok: false, reason: 'the server is stopping' };
    if (this.reloading) return { ok: false, reason: 'a reload is already in progress' };
    this.reloading = true;
    try {
      const loaded = load();
      if (!loaded.ok) return { ok: false, reason: loaded.errors.join('\n') };
      const next = loaded.config;
      const fixed = this.restartOnlyChange(next);
      if (fixed) return { ok: false, reason: `${fixed} cannot change on reload; restart instead` };

      let change: BindChange = { added: [], slotSockets: [] };
      try {
        // New listeners, and a socket per slot a higher worker count adds: steered away from until their workers are ready.
        change = this.listeners.bindMissing(next.listeners, next.server.workerCount);
        await this.listeners.listenBound();
      } catch (error) {
        this.listeners.undo(change);
        return { ok: false, reason: (error as Error).message };
      }
      const generation = this.generation + 1;
      let slots: Slot[];
      try {
        slots = this.spawnGeneration(generation, next);
      } catch (error) {
        this.listeners.undo(change);
        return { ok: false, reason: (error as Error).message };
      }
      try {
        await Promise.all(slots.map((slot) => slot.worker!.ready));
      } catch (error) {
        for (const slot of slots) {
          if (slot.respawnTimer) clearTimeout(slot.respawnTimer);
          slot.worker?.kill('reload abandoned');
        }
        this.listeners.undo(change);
        void this.steer();
        return { ok: false, reason: `new worker failed to start: ${(error as Error).message}` };
      }

      const retiring = this.slots;
      this.slots = slots;
      this.generation = generation;
      this.config = next;
      this.commitCertificates();
      this.accessLog.use(next.server.accessLogFile);
      this.abuse.reconfigure(next);
      // Slots above the new worker count get no new connections from now on; their old workers
      // keep accepting a moment, for what is queued there and handshakes already under way.
      void this.steer();
      for (const slot of retiring) {
        if (slot.respawnTimer) clearTimeout(slot.respawnTimer);
        const worker = slot.worker;
        if (worker === null) continue;
        if (worker.slot < next.server.workerCount) worker.drain(next.server.shutdownTimeoutMs);
        else setTimeout(() => worker.drain(next.server.shutdownTimeoutMs), RETIRED_SLOT_ACCEPT_MS).unref();
      }
      // The master's copy goes now; the old workers' copies close as they drain.
      this.listeners.retireSlots(next.server.workerCount);
      const removed = this.listeners.closeExcept(next.listeners);
      this.log.info({ generation, added: change.added, removed }, 'reload complete: new generation serving');
      return { ok: true, generation };
    } finally {
      this.reloading = false;
    }
  }

  /** Drain every worker and wait for them to exit (killing stragglers after the deadline). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) if (slot.respawnTimer) clearTimeout(slot.respawnTimer);
    const exits = [...this.workers].map((worker) => worker.exited);
    for (const worker of this.workers) worker.drain(this.config.server.shutdownTimeoutMs);
    await Promise.all(exits);
    clearInterval(this.monitor);
    this.listeners.closeAll();
    // Cgroups of the last workers are removed as they exit; give that a moment.
    await Promise.all([...this.cgroupRemovals]);
    rmSync(this.privateDir, { recursive: true, force: true });
  }

  async status(): Promise<WorkerStatus[]> {
    const workers = [...this.workers];
    const pids = workers.map((worker) => worker.pid).filter((pid): pid is number => pid !== undefined);
    let usage: Record<number, { cpu: number; memory: number }> = {};
    try {
      if (pids.length > 0) usage = await pidusage(pids);
    } catch {
      // A worker exited between the listing and the measurement; report what we have.
    }
    return workers.map((worker) => {
      const pid = worker.pid ?? null;
      const measured = pid === null ? undefined : usage[pid];
      return {
        pid,
        uid: pid === null ? worker.uid : (processUid(pid) ?? worker.uid),
        slot: worker.slot,
        generation: worker.generation,
        state: worker.state,
        uptimeSeconds: Math.round((Date.now() - worker.startedAt) / 1000),
        restarts: worker.restarts,
        rssBytes: measured ? measured.memory : null,
        cpuPercent: measured ? Math.round(measured.cpu * 10) / 10 : null,
      };
    });
  }

  /** Settings the running master holds open and cannot swap under its clients. */
  private restartOnlyChange(next: CompiledConfig): string | null {
    const now = this.config.server;
    if (next.server.pidFile !== now.pidFile) return 'server.pid_file';
    if (next.server.controlSocket !== now.controlSocket) return 'server.control_socket';
    if (next.server.logFile !== now.logFile) return 'server.log_file';
    // The uids of live workers come from the range the master started with.
    if (next.isolation.workerUidBase !== this.config.isolation.workerUidBase) return 'process.isolation.worker_uid_base';
    return null;
  }

  /** Throws (naming the domain) when a certificate cannot be loaded: the generation does not start. */
  private spawnGeneration(generation: number, config: CompiledConfig): Slot[] {
    const slots: Slot[] = [];
    let manual: LoadedCertificate[] = [];
    try {
      manual = config.tls === null ? [] : loadTlsMaterial(config.tls, this.log);
    } catch (error) {
      this.certificateError = (error as Error).message;
      throw error;
    }
    this.pendingManual = manual;
    // cert_dir and the issuer are made now: a problem with them refuses the generation, never half-switches it.
    this.pendingIssuance = config.issuance === null ? null : this.issued.prepare(config.issuance);
    if (config.isolation.chroot === null) {
      const problem = makeImplicitJail(implicitJail(config));
      if (problem !== null) throw new Error(`process.isolation.chroot is unset and ${problem}`);
    }
    const tls: GenerationTls =
      config.tls === null ? null : { certificates: materialOf([...manual, ...this.issued.stored(config.issuance)]) };
    const htpasswd = loadHtpasswd(config);
    for (let index = 0; index < config.server.workerCount; index++) {
      const slot: Slot = { worker: null, tls, htpasswd, restarts: 0, quickCrashes: 0, respawnTimer: null };
      slots.push(slot);
      this.spawnInto(slot, index, generation, config);
    }
    return slots;
  }

  private readonly cgroupRemovals = new Set<Promise<void>>();
  /** What `miwidothttp certs` shows: the serving generation's manual certificates (never a key), and the last load failure. */
  manualCertificates: CertificateInfo[] = [];
  certificateError: string | null = null;
  private manual: LoadedCertificate[] = [];
  private pendingManual: LoadedCertificate[] = [];
  private pendingIssuance: PreparedIssuance | null = null;
  /** ACME challenge answers, served by every worker. */
  readonly challenges = new WorkerChallengeBoard(
    () => this.slots.flatMap((slot) => (slot.worker?.state === 'ready' ? [slot.worker] : [])),
    () => [...this.workers],
  );
  /** Identities for AbuseControl: unique over the master's life, unlike pids. */
  private linkIds = 0;
  /** What the master does with each live worker's messages (budgets, verdicts). */
  private readonly desk: WorkerDesk;

  /** The generation that was starting now serves: its certificates are the ones shown, its provider names the ones renewed. */
  private commitCertificates(): void {
    this.manual = this.pendingManual;
    this.manualCertificates = this.manual.map(({ name, subjectNames, issuer, notBefore, notAfter, fingerprint256 }) => ({
      name,
      subjectNames,
      issuer,
      notBefore,
      notAfter,
      fingerprint256,
    }));
    this.certificateError = null;
    this.issued.configure(this.pendingIssuance);
    // A certificate obtained while this generation was starting is not in its TLS_INIT.
    if (this.config.issuance !== null) this.certificatesChanged();
  }

  /**
   * A certificate was obtained or renewed: the serving generation's workers
   * take the new set for new handshakes (TLS_CERTS), and workers started
   * later (a crash replaced) get it too. Open connections keep theirs.
   */
  certificatesChanged(): void {
    const tls = this.slots[0]?.tls ?? null;
    if (tls === null) return;
    tls.certificates = materialOf([...this.manual, ...this.issued.stored(this.config.issuance)]);
    const message: MasterMessage = { type: 'TLS_CERTS', certificates: tls.certificates };
    for (const worker of this.workers) if (worker.generation === this.generation) worker.post(message);
  }

  /** True while at least one worker of the serving generation is ready (the watchdog's test). */
  serving(): boolean {
    return this.slots.some((slot) => slot.worker?.state === 'ready');
  }

  /**
   * New connections go to the sockets of the slots that have a ready worker
   * that answers its pings (listeners.ts): not to a dead slot waiting for
   * its replacement, a stalled worker's, a slot a reload dropped, or a new
   * slot whose worker is not ready. What is queued
   * on a socket stays there for the next worker of its slot. Called on every
   * change of a worker's state; a failure is logged, and the kernel's own
   * spreading stays in force.
   */
  private steer(): Promise<void> {
    const serving = this.config.server.workerCount;
    const ready = new Set<number>();
    for (const worker of this.workers)
      if (worker.state === 'ready' && worker.responsive && (worker.slot < serving || worker.generation > this.generation))
        ready.add(worker.slot);
    return this.listeners.steer(ready).catch((error: unknown) => {
      if (!this.stopping) this.log.error({ err: error }, 'cannot steer new connections among the workers');
    });
  }

  /** A message for every live worker of every generation (ban changes). */
  broadcast(message: MasterMessage): void {
    for (const worker of this.workers) worker.post(message);
  }

  /** The allowed_syscalls list as a file the helper can read, or null for the built-in list. */
  private seccompFile(config: CompiledConfig, generation: number): string | null {
    const list = config.isolation.allowedSyscalls;
    if (list === null) return null;
    const file = path.join(this.privateDir, `seccomp-generation-${generation}.list`);
    writeFileSync(file, `${list.join('\n')}\n`, { mode: 0o600 });
    return file;
  }

  private spawnInto(slot: Slot, index: number, generation: number, config: CompiledConfig): void {
    // The sockets of this slot: a worker in slot k accepts where every earlier worker of slot k did.
    const listeners = this.listeners.forSlot(
      index,
      config.listeners.map((listener) => listener.id),
    );
    this.listeners.handingOver(listeners);
    const parent = config.isolation.cgroupParent;
    const cgroup = parent === null ? null : `${parent}/worker-${process.pid}-${++this.spawned}`;
    const uid = config.isolation.runAsUser === null ? this.uids.claim() : null;
    const identity = workerIdentity(config, uid);
    const command = workerCommand(config, {
      cgroup,
      seccompFile: this.seccompFile(config, generation),
      ...identity,
      keepFds: config.server.accessLogFile === null ? [CHANNEL_FD] : [CHANNEL_FD, ACCESS_LOG_FD],
      listenFds: listeners.map((_, i) => FIRST_LISTENER_FD + i),
    });
    const startup: MasterMessage[] = [this.abuse.banSync()];
    if (slot.tls !== null) startup.push({ type: 'TLS_INIT', certificates: slot.tls.certificates, ...this.tickets.forWorkers() });
    if (config.issuance?.acme) startup.push(this.challenges.message());
    // The htpasswd lines travel with the config (CFG_INIT): workers never read the files.
    const workerConfig = Object.keys(slot.htpasswd).length === 0 ? config : { ...config, htpasswd: slot.htpasswd };
    let worker: WorkerProcess;
    try {
      worker = new WorkerProcess(
        index,
        generation,
        slot.restarts,
        cgroup,
        uid,
        command,
        workerConfig,
        listeners,
        this.log,
        this.sink,
        startup,
      );
    } catch (error) {
      if (uid !== null) this.uids.release(uid);
      throw error;
    }
    slot.worker = worker;
    if (worker.accessLog !== null) this.accessLog.attach(worker.accessLog, worker);
    this.workers.add(worker);
    worker.onResponsiveness = () => void this.steer();
    const link = this.desk.attach(worker, ++this.linkIds);
    this.log.debug({ slot: index, workerPid: worker.pid, generation }, 'worker spawned');
    void worker.ready.then(
      () => {
        this.log.info({ slot: index, workerPid: worker.pid, generation }, 'worker ready');
        this.applyIoWeight(worker, config);
        void this.steer();
      },
      () => undefined,
    );
    void worker.exited.then((exit) => {
      this.workers.delete(worker);
      void this.steer();
      this.desk.detach(worker);
      this.abuse.workerGone(link);
      this.metrics.workerGone(link.id);
      if (uid !== null) this.uids.release(uid);
      if (worker.cgroup !== null) this.scheduleCgroupRemoval(worker.cgroup);
      const retired = worker.generation < this.generation || this.stopping || slot.worker !== worker;
      if (retired && (exit.reason === null || exit.reason.startsWith('still running'))) {
        this.log.info({ slot: index, workerPid: worker.pid, generation, code: exit.code, signal: exit.signal }, 'worker exited');
        return;
      }
      if (WorkerProcess.cannotSandbox(exit)) {
        // Starting it again would fail the same way: no respawn loop.
        this.log.fatal({ slot: index, generation, reason: worker.lastError }, 'cannot apply the worker sandbox; the slot stays empty');
        return;
      }
      this.log.error(
        { slot: index, workerPid: worker.pid, generation, code: exit.code, signal: exit.signal, reason: exit.reason ?? worker.lastError },
        'worker died',
      );
      if (!retired && this.slots.includes(slot)) this.scheduleRespawn(slot, index, worker);
    });
  }

  private scheduleCgroupRemoval(cgroup: string): void {
    const removal = (async () => {
      for (let attempt = 0; attempt < CGROUP_REMOVE_ATTEMPTS; attempt++) {
        if (removeCgroup(cgroup).length === 0) return;
        await sleep(100);
      }
      this.log.warn({ cgroup }, 'worker cgroup still busy; it is removed at the next start');
    })();
    this.cgroupRemovals.add(removal);
    void removal.finally(() => this.cgroupRemovals.delete(removal));
  }

  private applyIoWeight(worker: WorkerProcess, config: CompiledConfig): void {
    const weight = config.isolation.ioWeight;
    if (weight === null || worker.cgroup === null || worker.pid === undefined) return;
    if (applyIoWeight(worker.cgroup, worker.pid, weight)) return;
    if (!this.ioWeightUnsupportedLogged) {
      this.ioWeightUnsupportedLogged = true;
      this.log.warn(
        { key: 'process.isolation.io_weight' },
        'io weight unsupported by this kernel (no io.weight or blkio.weight); not applied',
      );
    }
  }

  /**
   * A worker at its memory or CPU limit for longer than the grace period is
   * replaced gracefully: a new worker takes its slot, then it drains.
   */
  private async checkResources(): Promise<void> {
    const iso = this.config.isolation;
    if (iso.maxMemoryBytes === null && iso.maxCpuPercent === null) return;
    const ready = this.slots
      .map((slot) => slot.worker)
      .filter((worker): worker is WorkerProcess => worker?.state === 'ready' && worker.pid !== undefined);
    if (ready.length === 0) return;
    let usage: Record<number, { cpu: number; memory: number }>;
    try {
      usage = await pidusage(ready.map((worker) => worker.pid!));
    } catch {
      return; // a worker exited in between; next round
    }
    const now = Date.now();
    for (const worker of ready) {
      const measured = usage[worker.pid!];
      if (!measured) continue;
      const overMemory = iso.maxMemoryBytes !== null && measured.memory > iso.maxMemoryBytes * MEMORY_ALARM_SHARE;
      const overCpu = iso.maxCpuPercent !== null && measured.cpu >= iso.maxCpuPercent * CPU_ALARM_SHARE;
      if (!overMemory && !overCpu) {
        worker.overLimitSince = null;
        continue;
      }
      worker.overLimitSince ??= now;
      if (now - worker.overLimitSince < iso.resourceGracePeriodMs) continue;
      const slot = this.slots.find((candidate) => candidate.worker === worker);
      if (!slot || this.stopping) continue;
      this.log.warn(
        { slot: worker.slot, workerPid: worker.pid, rssBytes: measured.memory, cpuPercent: Math.round(measured.cpu), overMemory, overCpu },
        'worker over its resource limit: replacing it gracefully',
      );
      this.replace(slot, worker);
    }
  }

  /** Start a replacement in the slot; the old worker drains once the new one is ready. */
  private replace(slot: Slot, old: WorkerProcess): void {
    slot.restarts += 1;
    this.spawnInto(slot, old.slot, this.generation, this.config);
    const replacement = slot.worker!;
    void replacement.ready.then(
      () => old.drain(this.config.server.shutdownTimeoutMs),
      () => old.drain(this.config.server.shutdownTimeoutMs),
    );
  }

  /**
   * Replace a dead worker of the running generation: at once the first time,
   * then with exponential backoff and jitter while replacements keep dying
   * young, so a crash loop cannot spin the CPU.
   */
  private scheduleRespawn(slot: Slot, index: number, dead: WorkerProcess): void {
    const lived = Date.now() - dead.startedAt;
    slot.quickCrashes = lived < CRASH_LOOP_WINDOW_MS ? slot.quickCrashes + 1 : 1;
    slot.restarts += 1;
    this.metrics.workerRestarted();
    slot.worker = null;
    let delay = 0;
    if (slot.quickCrashes > 1) {
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (slot.quickCrashes - 2));
      delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
      this.log.warn(
        { slot: index, crashesInARow: slot.quickCrashes, delayMs: delay },
        'worker crash loop: backing off before the next start',
      );
    }
    slot.respawnTimer = setTimeout(() => {
      slot.respawnTimer = null;
      if (this.stopping || !this.slots.includes(slot)) return;
      this.spawnInto(slot, index, this.generation, this.config);
    }, delay);
  }
}

/** Every htpasswd file of `config`, read now; throws with the first problem (the generation does not start). */
function loadHtpasswd(config: CompiledConfig): CompiledConfig['htpasswd'] {
  const table: Record<string, HtpasswdEntries> = {};
  for (const file of htpasswdFiles(config)) {
    const read = readHtpasswd(file);
    if (!read.ok) throw new Error(read.reason);
    table[file] = read.entries;
  }
  return table;
}
