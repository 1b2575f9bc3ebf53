/**
 * One measured run of one server in one scenario: a warm-up, then the load
 * (wrk or h2load) with the CPU of every process sampled inside the run
 * window, wrk's connections per worker counted at the start and mid-run,
 * and for the large file the workers' resident memory followed throughout.
 */
import path from 'node:path';
import { SCENARIOS, type ScenarioName, type ServerName } from './catalogue.js';
import { runH2load } from './h2load.js';
import type { Endpoint } from './http-check.js';
import { connectionsByProcess, cpuBetween, memoryOfTree, snapshotCpu, type CpuSnapshot, type CpuUsage, type Tracked } from './procs.js';
import type { RunningServer } from './servers.js';
import { settings } from './settings.js';
import { runWrk, type LoadResult } from './wrk.js';

/** How often workers' memory is sampled while the large file streams. */
const MEMORY_SAMPLE_MS = 200;

export interface RunRecord {
  readonly round: number;
  readonly load: LoadResult;
  readonly cpu: CpuUsage[];
  /**
   * The load's connections per worker (pid -> count) just after the start
   * and at mid-run: a shared accept socket can hand most of a burst of
   * connects to one worker.
   */
  readonly connections: { early: Record<number, number>; middle: Record<number, number> };
  /** Workers' resident memory (pid -> bytes) before the run and its peak during it; null when not followed. */
  readonly memory: { before: Record<number, number>; peak: Record<number, number> } | null;
  /** The fixed rate asked for (requests/s, all connections together); null when as fast as it goes. */
  readonly ratePerSecond: number | null;
}

export interface RunContext {
  readonly tmp: string;
  readonly upstream: Tracked | null;
  /** wrk's environment for full handshakes (the shim preloaded); null when that could not be arranged. */
  readonly fullHandshakeEnv: NodeJS.ProcessEnv | null;
  /** Set once cleanup began: no new load may start after it. */
  readonly stopping: () => boolean;
}

/** Where `scenario` sends its load on `server`; null when the server does not offer that transport. */
export function scenarioEndpoint(server: RunningServer, scenario: ScenarioName): Endpoint | null {
  return server.endpoints[SCENARIOS[scenario].transport] ?? null;
}

function childMemory(root: number): Record<number, number> {
  const memory: Record<number, number> = {};
  for (const entry of memoryOfTree(root)) if (entry.role === 'child') memory[entry.pid] = entry.rssBytes;
  return memory;
}

/** One load run of `durationSeconds` with the scenario's tool. */
function load(
  endpoint: Endpoint,
  scenario: ScenarioName,
  durationSeconds: number,
  context: RunContext,
  ratePerSecond: number | null,
  onStart?: (pid: number) => void,
): Promise<LoadResult> {
  const spec = SCENARIOS[scenario];
  if (spec.tool === 'wrk') {
    const scheme = endpoint.tls === null ? 'http' : 'https';
    return runWrk({
      url: `${scheme}://127.0.0.1:${endpoint.port}${spec.path}`,
      host: spec.host,
      threads: settings.threads,
      connections: spec.connections,
      durationSeconds,
      headers: spec.acceptEncoding === null ? spec.headers : [...spec.headers, `Accept-Encoding: ${spec.acceptEncoding}`],
      env: spec.fullHandshakes ? (context.fullHandshakeEnv ?? undefined) : undefined,
      onStart,
    });
  }
  if (spec.acceptEncoding !== null) throw new Error(`${spec.label}: h2load sends no Accept-Encoding here`);
  const scheme = endpoint.transport === 'h2' ? 'https' : 'http';
  const rate = spec.tool === 'h2load-rate' ? ratePerSecond : null;
  if (spec.tool === 'h2load-rate' && rate === null) throw new Error(`${spec.label} needs a rate`);
  return runH2load({
    url: `${scheme}://${spec.host}:${endpoint.port}${spec.path}`,
    port: endpoint.port,
    connections: spec.connections,
    threads: settings.threads,
    durationSeconds,
    streams: spec.tool === 'h2load' ? settings.h2Streams : 1,
    http1: spec.tool === 'h2load-rate',
    ratePerConnection: rate === null ? null : rate / spec.connections,
    logFile: path.join(context.tmp, 'h2load-requests.log'),
    onStart,
  });
}

/** Warm up, then one measured run with CPU, connection and (large file) memory samples taken inside it. */
export async function measureOnce(
  target: RunningServer,
  scenario: ScenarioName,
  round: number,
  context: RunContext,
  ratePerSecond: number | null,
): Promise<RunRecord> {
  const endpoint = scenarioEndpoint(target, scenario);
  if (endpoint === null) throw new Error(`${target.name} has no ${SCENARIOS[scenario].transport} endpoint`);
  if (context.stopping()) throw new Error('stopping');
  if (settings.warmupSeconds > 0) await load(endpoint, scenario, settings.warmupSeconds, context, ratePerSecond);
  if (context.stopping()) throw new Error('stopping');

  const roots: Array<{ pid: number; role: string; withChildren?: boolean }> = [
    { pid: target.process.pid, role: target.name },
    { pid: process.pid, role: 'bench', withChildren: false },
  ];
  if (SCENARIOS[scenario].host === 'proxy.test' && context.upstream !== null) roots.push({ pid: context.upstream.pid, role: 'upstream' });
  let first: CpuSnapshot | null = null;
  let last: CpuSnapshot | null = null;
  const connections: RunRecord['connections'] = { early: {}, middle: {} };
  const followMemory = scenario === 'large-file';
  const memory = followMemory ? { before: childMemory(target.process.pid), peak: {} as Record<number, number> } : null;
  const timers: NodeJS.Timeout[] = [];
  try {
    const result = await load(endpoint, scenario, settings.durationSeconds, context, ratePerSecond, (loadPid) => {
      // Sample inside the run window, clear of the client's connect and exit.
      const withClient = [...roots, { pid: loadPid, role: 'client' }];
      const marginMs = Math.min(500, (settings.durationSeconds * 1000) / 4);
      timers.push(
        setTimeout(() => {
          first = snapshotCpu(withClient);
          connections.early = connectionsByProcess(target.process.pid, endpoint.port);
        }, marginMs),
      );
      timers.push(
        setTimeout(() => (connections.middle = connectionsByProcess(target.process.pid, endpoint.port)), settings.durationSeconds * 500),
      );
      timers.push(setTimeout(() => (last = snapshotCpu(withClient)), settings.durationSeconds * 1000 - marginMs));
      if (memory !== null) {
        const sample = setInterval(() => {
          for (const [pid, rss] of Object.entries(childMemory(target.process.pid)))
            memory.peak[Number(pid)] = Math.max(memory.peak[Number(pid)] ?? 0, rss);
        }, MEMORY_SAMPLE_MS);
        timers.push(sample);
      }
    });
    const cpu = first !== null && last !== null ? cpuBetween(first, last) : [];
    return { round, load: result, cpu, connections, memory, ratePerSecond };
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
}

/**
 * The client's CPU in percent of one core above which (times its threads) a
 * run is limited by the client: a full TLS handshake costs the client more
 * than the server (it verifies the server's signature), so one client thread
 * can run out before two server workers do.
 */
export const CLIENT_BOUND_PERCENT = 90;

export function clientCpuPercent(run: RunRecord): number {
  return run.cpu
    .filter((usage) => usage.role === 'client' || usage.role === 'client/child')
    .reduce((sum, usage) => sum + usage.cpuPercent, 0);
}

export function foreignCpuPercent(run: RunRecord): number {
  return run.cpu.find((usage) => usage.role === 'other')?.cpuPercent ?? 0;
}

/** CPU the server under test used (master and workers), in percent of one core. */
function serverCpuPercent(run: RunRecord, server: ServerName): number {
  return run.cpu
    .filter((usage) => usage.role === server || usage.role === `${server}/child`)
    .reduce((sum, usage) => sum + usage.cpuPercent, 0);
}

/** Server CPU time per request: less sensitive to a busy machine than req/s. */
export function cpuMicrosPerRequest(run: RunRecord, server: ServerName): number {
  return run.load.requestsPerSecond === 0 ? 0 : ((serverCpuPercent(run, server) / 100) * 1e6) / run.load.requestsPerSecond;
}

/** The busiest worker's share of the connections sampled at the start of the run; null with fewer than two workers. */
export function busiestShare(run: RunRecord): number | null {
  const counts = Object.values(run.connections.early);
  const total = counts.reduce((a, b) => a + b, 0);
  if (counts.length < 2 || total === 0) return null;
  return Math.max(...counts) / total;
}
