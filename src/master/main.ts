/**
 * The privileged master: owns the pid file, the control socket, the log
 * destination and the listening sockets; supervises the workers; handles
 * signals. It never parses a request.
 */
import type { Server } from 'node:net';
import { unlinkSync } from 'node:fs';
import { BUILTIN_SOURCE } from '../config/file.js';
import { loadConfig } from '../config/load.js';
import type { CompiledConfig } from '../config/types.js';
import { createMasterLogger, createSink, type LogSink } from '../logging/logger.js';
import { AbuseControl } from './abuse/index.js';
import { AuditLog } from './audit-log.js';
import { Metrics } from './metrics.js';
import { SessionTickets } from './session-tickets.js';
import { startControlServer } from './control.js';
import { controlCommands } from './control-commands.js';
import { closeInheritedFds } from './fds.js';
import { activationSockets, SystemdNotifier } from './systemd.js';
import { ListenerSet } from './listeners.js';
import { delegatedCgroup, enterDelegatedLeaf, removeStaleCgroups } from '../isolation/cgroups.js';
import { DEFAULT_WORKER_ACCOUNT, prepareWorkerGroup } from '../isolation/worker-uids.js';
import { isProcessAlive, removePidFile, runningMaster, writePidFile } from './pid-file.js';
import { Supervisor, type ReloadOutcome } from './supervisor.js';
import { CertificateManager, certificateViews } from './certificate-manager.js';
import { createIssuer } from '../tls/issuance/index.js';
import { DashboardCollector } from './dashboard/collector.js';
import { AccessLogFile } from './access-log-file.js';
import type { Issuer } from '../tls/issuance/types.js';
import type { ClusterNode } from '../cluster/node.js';

/** Exit codes of `start`. */
export const EXIT_OK = 0;
export const EXIT_START_FAILED = 1;

/**
 * Run until stopped. Resolves with the process exit code; errors that stop
 * the start are logged as one line and give EXIT_START_FAILED.
 */
export async function runMaster(startedWith: string | null, fileConfig: CompiledConfig): Promise<number> {
  let config = fileConfig;
  /** The file reloads read: the one `start` was given, or the one a successful `reload -c FILE` named since (as `caddy reload --config`). */
  let configPath = startedWith;
  // Sockets systemd passed are ours to keep; any other descriptor inherited without close-on-exec goes.
  const activation = activationSockets();
  const inherited = closeInheritedFds(new Set(activation));
  let sink: LogSink;
  try {
    sink = createSink(config.server.logFile);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    process.stderr.write(
      `miwidothttp: server.log_file: ${code === undefined ? (error as Error).message : `cannot create ${config.server.logFile}: ${code}`}\n`,
    );
    return EXIT_START_FAILED;
  }
  const log = createMasterLogger(sink, config.server.logLevel);
  const systemd = new SystemdNotifier(log);
  if (inherited.length > 0) log.warn({ fds: inherited }, 'closed file descriptors inherited without close-on-exec');

  const fail = (message: string): number => {
    log.fatal(message);
    process.stderr.write(`miwidothttp: ${message}\n`);
    sink.flushSync();
    return EXIT_START_FAILED;
  };

  // What the host must offer (the sandbox helper, root, AppArmor, cgroup
  // controllers, a free worker uid range, ...) was checked by the preflight, in `start` before this.
  const group = prepareWorkerGroup(config);
  if (group.problem !== null) return fail(group.problem);
  if (group.created) log.info({ user: DEFAULT_WORKER_ACCOUNT }, 'created the system user whose group workers run in');
  if (config.isolation.runAsUser !== null)
    log.warn(
      { key: 'process.isolation.run_as_user', user: config.isolation.runAsUser },
      'every worker runs as this one user: workers share a uid (and with it any other process of that user); unset run_as_user for a uid per worker',
    );
  if (config.isolation.cgroupParent !== null) {
    const stale = removeStaleCgroups(config.isolation.cgroupParent, isProcessAlive);
    if (stale.length > 0) log.info({ cgroups: stale }, 'removed worker cgroups left by a previous master');
    const delegated = delegatedCgroup();
    if (delegated !== null && config.isolation.cgroupParent === delegated) {
      const problem = enterDelegatedLeaf(delegated);
      if (problem !== null) return fail(`process.isolation.enable_cgroups: ${problem}`);
      log.info({ cgroup: delegated }, 'worker cgroups go under the cgroup systemd delegated to the service');
    }
  }

  const other = runningMaster(config.server.pidFile);
  if (other !== null) return fail(`already running (pid ${other}, ${config.server.pidFile})`);
  try {
    writePidFile(config.server.pidFile);
  } catch (error) {
    return fail(`cannot write pid file ${config.server.pidFile}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }

  const listeners = new ListenerSet();
  const audit = new AuditLog(config.audit, log);
  const self = { role: 'master', pid: process.pid } as const;
  // Clustered: join before anything serves, and run the cluster's latest shared configuration.
  let cluster: ClusterNode | null = null;
  if (config.cluster !== null && configPath !== null) {
    const joined = await joinClusterOrFail(config, configPath, log, audit);
    if (typeof joined === 'string') {
      audit.flush();
      removePidFile(config.server.pidFile);
      return fail(joined);
    }
    ({ cluster, config } = joined);
  }
  const metrics = new Metrics({ activeBans: () => abuse.activeBans });
  const abuse = new AbuseControl(
    config,
    log,
    audit,
    (message) => supervisor.broadcast(message),
    (source) => metrics.banAdded(source),
  );
  const tickets = new SessionTickets((message) => supervisor.broadcast(message), undefined, cluster?.sharedTickets() ?? null);
  const issued: CertificateManager = new CertificateManager(
    log,
    audit,
    (spec): Issuer => {
      const issuer = createIssuer(spec, cluster?.challengeBoard() ?? supervisor.challenges, log);
      return cluster?.issuer(spec, issuer) ?? issuer;
    },
    () => supervisor.certificatesChanged(),
  );
  const dashboard: DashboardCollector = new DashboardCollector({
    config: () => supervisor.config,
    generation: () => supervisor.generation,
    workers: () => supervisor.status(),
    bans: () => abuse.listBans(),
    certificates: () => certificateViews(supervisor.manualCertificates, issued.status()),
    certificateError: () => supervisor.certificateError,
    statusTotals: () => metrics.statusTotals(),
    openConnections: () => metrics.openConnections(),
    auditLogFailing: () => audit.failing,
  });
  audit.observer = (entry) => dashboard.recordAudit(entry);
  const accessLog = new AccessLogFile(log);
  const supervisor: Supervisor = new Supervisor(config, listeners, log, sink, audit, abuse, metrics, tickets, issued, dashboard, accessLog);
  let control: Server | null = null;
  let stopped: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => (stopped = resolve));
  let stopping = false;

  const cleanup = (): void => {
    control?.close();
    try {
      unlinkSync(config.server.controlSocket);
    } catch {
      // Not created, or already removed.
    }
    removePidFile(config.server.pidFile);
    listeners.closeAll();
    abuse.close();
    tickets.close();
    issued.close();
    dashboard.close();
  };

  const stop = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ reason: why }, 'stopping: draining workers');
    // No order may start (or wait for workers) while they drain.
    issued.close();
    await systemd.stopping();
    await supervisor.stop();
    await cluster?.close();
    await abuse.flush();
    cleanup();
    log.info('stopped');
    audit.flush();
    accessLog.flush();
    sink.flushSync();
    stopped(EXIT_OK);
  };

  const reload = async (trigger: string, file: string = configPath ?? BUILTIN_SOURCE): Promise<ReloadOutcome> => {
    await systemd.reloading();
    const path = file === BUILTIN_SOURCE ? null : file;
    let outcome: ReloadOutcome;
    try {
      if (cluster !== null && path !== configPath)
        outcome = { ok: false, reason: `a cluster node reloads its own file ${configPath}; push ${file} to the cluster instead` };
      else outcome = await supervisor.reload(() => cluster?.load('reload') ?? loadConfig(path, process.env, 'reload'));
    } catch (error) {
      // Whatever went wrong, the reload is refused like any other: audited, and systemd told READY=1 again.
      outcome = { ok: false, reason: `reload failed: ${String((error as Error).message ?? error).split('\n')[0]}` };
    }
    if (outcome.ok && path !== configPath) {
      log.info({ from: configPath ?? BUILTIN_SOURCE, to: file }, 'reloads read the named file from now on');
      configPath = path;
    }
    cluster?.reloaded(trigger, outcome);
    // systemd waits for READY=1 after RELOADING=1 either way; STATUS says which way it went.
    await systemd.ready(
      outcome.ok
        ? `serving: generation ${outcome.generation}`
        : `reload refused, generation ${supervisor.generation} still serving: ${outcome.reason}`,
    );
    metrics.reloaded(outcome.ok);
    if (outcome.ok) {
      log.info({ trigger, generation: outcome.generation }, 'configuration reloaded');
      audit.write('configuration', { event: 'config.reload', detail: trigger }, self, { generation: outcome.generation });
    } else {
      log.error({ trigger, reason: outcome.reason }, 'reload refused; the running configuration keeps serving');
      audit.write('configuration', { event: 'config.reload_refused', detail: outcome.reason.slice(0, 2000) }, self, { trigger });
    }
    return outcome;
  };

  try {
    control = await startControlServer(
      config.server.controlSocket,
      log,
      controlCommands({ supervisor, listeners, abuse, issued, audit, reload, stop, cluster }),
    );
    const adopted = listeners.adopt(activation);
    if (adopted.length > 0) log.info({ sockets: adopted }, 'socket activation: listening sockets from systemd');
    await supervisor.start();
    await cluster?.attach({
      reload,
      abuse,
      tickets,
      workersBoard: supervisor.challenges,
      answersChallenges: () => supervisor.config.tls?.answersAcmeChallenges === true,
    });
    const unclaimed = listeners.unclaimedActivated();
    if (unclaimed.length > 0) log.warn({ sockets: unclaimed }, 'socket activation: sockets no listener of the config claims (left unused)');
  } catch (error) {
    await supervisor.stop().catch(() => undefined);
    await cluster?.close().catch(() => undefined);
    cleanup();
    return fail(`start failed: ${(error as Error).message}`);
  }

  process.on('SIGHUP', () => {
    audit.write('admin', { event: 'admin.reload' }, self, { via: 'SIGHUP' });
    reload('SIGHUP').catch((error: unknown) => log.error({ err: error }, 'reload failed'));
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      audit.write('admin', { event: 'admin.stop' }, self, { via: signal });
      void stop(signal);
    });
  }
  process.on('SIGUSR1', () => {
    const problem = sink.reopen();
    if (problem !== null) log.error({ key: 'server.log_file', problem }, 'log file not reopened; still writing to the one it had');
    audit.reopen();
    accessLog.reopen();
    if (problem === null) log.info('log files reopened');
  });
  // A broken stdout pipe must not kill the master and orphan its workers' requests.
  process.stdout.on('error', () => undefined);

  log.info(
    {
      generation: supervisor.generation,
      workers: config.server.workerCount,
      listeners: config.listeners.map((l) => l.id),
      config: config.source,
    },
    'miwidothttp started',
  );
  // Every worker of the first generation is ready: only now is the service up.
  await systemd.ready(`serving: generation ${supervisor.generation}, ${config.server.workerCount} workers`);
  systemd.startWatchdog(() => supervisor.serving());
  return finished;
}

/** Joins the cluster and loads this node's configuration with the cluster's shared part; a string is the one line that stops `start`. */
async function joinClusterOrFail(
  config: CompiledConfig,
  configPath: string,
  log: ReturnType<typeof createMasterLogger>,
  audit: AuditLog,
): Promise<{ cluster: ClusterNode; config: CompiledConfig } | string> {
  let cluster: ClusterNode;
  try {
    // Loaded only here: the cluster's code (etcd3, gRPC, protobufjs, @peculiar/x509) is ~30 MB of resident memory a single server never needs.
    const clustered = await import('../cluster/node.js');
    cluster = await clustered.ClusterNode.start(config.cluster!, configPath, log, audit);
  } catch (error) {
    return (error as Error).message;
  }
  const loaded = cluster.load('start');
  if (loaded.ok) return { cluster, config: loaded.config };
  await cluster.close();
  return `the cluster's configuration is refused on this node: ${loaded.errors.join('; ')}`;
}
