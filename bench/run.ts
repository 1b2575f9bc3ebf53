/**
 * `npm run bench`: miwidothttp against a bare node cluster (the ceiling for
 * a Node server), nginx (the reference), Caddy and HAProxy, on a 1 KiB
 * static file, through a reverse proxy to one shared upstream (and a 16 KiB
 * page each proxy compresses on the fly), over HTTPS
 * (full TLS handshakes per second, keep-alive throughput) and HTTP/2, on a
 * 100 MB file, and at a fixed rate for latency; with every server's idle
 * memory and how each spreads connections over its workers. The scenarios
 * and servers: catalogue.ts; the settings: settings.ts; the report and the
 * goals: report.ts.
 *
 * A benchmark, not a test: it measures and reports, and fails only when it
 * cannot measure. Servers are driven alternately (round r runs every server
 * once, in an order rotated by r) so drift in the machine's state — thermal,
 * page cache, a noisy neighbour — spreads over all of them instead of
 * landing on whichever ran last. Everything listens on 127.0.0.1 only.
 */
import { mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync, chmodSync, writeSync } from 'node:fs';
import { createHash, randomFillSync } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { caddyVersion } from './caddy.js';
import { SCENARIO_ORDER, SCENARIOS, type ScenarioName, type ServerName, serverLabel } from './catalogue.js';
import { h2loadVersion } from './h2load.js';
import { killLoadTools } from './load-tool.js';
import { haproxyVersion } from './haproxy.js';
import { htmlPage } from './html-page.js';
import { expectedBody, type ExpectedBody, inspectServes } from './http-check.js';
import { cpuMicrosPerRequest, foreignCpuPercent, measureOnce, scenarioEndpoint, type RunRecord } from './measure.js';
import { nginxVersion } from './nginx.js';
import { killAllSync, memoryOfTree, runCommand, stopAll, type ProcessMemory } from './procs.js';
import { buildReport, type Cell, FOREIGN_LOAD_WARN_PERCENT, formatMs, type MemoryReport } from './report.js';
import { ServerSet, type RunningServer } from './servers.js';
import {
  benchmarkFile,
  CLI,
  CONTENT_TYPE,
  FILE_NAME,
  FULL_HANDSHAKE_SHIM_SOURCE,
  LARGE_FILE_BYTES,
  LARGE_FILE_NAME,
  onlyScenarios,
  PAGE_NAME,
  REPO_ROOT,
  RESULTS_FILE,
  settings,
} from './settings.js';
import { describeHandshakes, describeNegotiated, KEY_DESCRIPTION, negotiated, prepareTls, type Negotiated, type TlsSetup } from './tls.js';
import { wrkVersion } from './wrk.js';

/** Idle means idle: this long after the last request before memory is read. */
const SETTLE_MS = 3000;

let tmpDir: string | null = null;
/** The certificate, its key and the wrk shim: apart from tmpDir, which nginx (as root) serves files from. */
let tlsDir: string | null = null;
/** The miwidothttp instances' state: outside the web root, which must not hold it. */
let stateDir: string | null = null;
let keepTmp = process.env.BENCH_KEEP_TMP === '1';
let serverSet: ServerSet | null = null;
let cleanupPromise: Promise<void> | null = null;
/** Set once cleanup began: no new load may start after it. */
let stopping = false;

function cleanup(): Promise<void> {
  stopping = true;
  cleanupPromise ??= (async () => {
    killLoadTools();
    await serverSet?.stopInstances();
    await stopAll(3000);
    for (const dir of [tmpDir, tlsDir, stateDir]) {
      if (dir === null) continue;
      if (keepTmp) process.stderr.write(`bench: kept ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    }
  })();
  return cleanupPromise;
}

function onSignal(signal: NodeJS.Signals): void {
  process.stderr.write(`\nbench: ${signal}, stopping everything\n`);
  void cleanup().finally(() => process.exit(130));
  // A second signal, or a cleanup that hangs, must still end the run.
  setTimeout(() => process.exit(130), 20_000).unref();
}
process.on('SIGINT', onSignal);
// `npm run bench | head` must not turn a closed pipe into a crash that skips cleanup.
process.stdout.on('error', () => undefined);
process.on('SIGTERM', onSignal);
process.on('exit', () => {
  killLoadTools();
  killAllSync();
});

/** The 100 MB file, written in 1 MiB pieces of pseudo-random bytes (nothing a server could compress or dedupe). */
function writeLargeFile(file: string): ExpectedBody {
  const fd = openSync(file, 'w', 0o644);
  const piece = Buffer.alloc(1024 * 1024);
  const digest = createHash('sha256');
  for (let written = 0; written < LARGE_FILE_BYTES; written += piece.length) {
    randomFillSync(piece);
    writeSync(fd, piece);
    digest.update(piece);
  }
  closeSync(fd);
  return { bytes: LARGE_FILE_BYTES, sha256: digest.digest('hex'), contentType: null };
}

function printRun(run: RunRecord, scenario: ScenarioName, server: ServerName): void {
  const { load } = run;
  const errors = load.non2xx3xx + Object.values(load.socketErrors).reduce((a, b) => a + b, 0);
  const cpu = run.cpu
    .filter((usage) => usage.cpuPercent > 0)
    .map((usage) => `${usage.role.replace('/child', '*')} ${usage.cpuPercent}%`)
    .join(', ');
  const spread = Object.values(run.connections.early);
  process.stdout.write(
    `  round ${run.round}  ${SCENARIOS[scenario].label.padEnd(18)} ${serverLabel(scenario, server).padEnd(20)} ` +
      `${load.requestsPerSecond.toFixed(0).padStart(7)} req/s  p99 ${formatMs(load.p99Ms).padStart(9)}  ` +
      `${cpuMicrosPerRequest(run, server).toFixed(1).padStart(6)} us cpu/req` +
      `${errors > 0 ? `  (${load.non2xx3xx} non-2xx, socket errors ${JSON.stringify(load.socketErrors)})` : ''}` +
      `  | cpu ${cpu}${spread.length > 1 ? ` | conns/worker [${spread.join(' ')}]` : ''}\n`,
  );
}

/** Resident memory of every running server's processes. */
function memoryOfAll(running: readonly RunningServer[]): Partial<Record<ServerName, ProcessMemory[]>> {
  return Object.fromEntries(running.map((server) => [server.name, memoryOfTree(server.process.pid)]));
}

/** What `miwidothttp status --json` reports of the default instance's memory. */
async function statusMemory(running: readonly RunningServer[]): Promise<MemoryReport['status']> {
  const instance = running.find((server) => server.name === 'miwidothttp');
  if (instance?.configFile == null) return null;
  const status = await runCommand(CLI, ['status', '--json', '-c', instance.configFile], 15_000);
  try {
    const parsed = JSON.parse(status.output) as { master: { rssBytes?: number | null }; workers: { rssBytes: number | null }[] };
    return { master: parsed.master.rssBytes ?? null, workers: parsed.workers.map((worker) => worker.rssBytes) };
  } catch {
    return null;
  }
}

async function main(): Promise<number> {
  const wrk = wrkVersion();
  const h2load = h2loadVersion();
  if (wrk === null) {
    process.stderr.write('bench: wrk is not installed, so nothing can be measured (apt-get install -y wrk).\n');
    return 1;
  }
  if (h2load === null)
    process.stderr.write('bench: h2load is not installed: no HTTP/2 or latency rows (apt-get install -y nghttp2-client).\n');
  const installed = { nginx: nginxVersion(), caddy: caddyVersion(), haproxy: haproxyVersion() };
  for (const [name, version] of Object.entries(installed))
    if (version === null) process.stderr.write(`bench: ${name} is not available: no ${name} rows (apt-get install -y ${name}).\n`);
  const only = onlyScenarios();
  const scenarios = SCENARIO_ORDER.filter(
    (scenario) => (only === null || only.has(scenario)) && (SCENARIOS[scenario].tool === 'wrk' || h2load !== null),
  );

  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-bench-'));
  chmodSync(tmpDir, 0o755);
  const tmp = tmpDir;
  // The web root holds the served files only: a root that shows a config, a log or state is refused.
  const root = path.join(tmp, 'www');
  mkdirSync(root, { mode: 0o755 });
  const small = benchmarkFile();
  writeFileSync(path.join(root, FILE_NAME), small, { mode: 0o644 });
  const expected = expectedBody(small, CONTENT_TYPE);
  const expectedLarge = scenarios.includes('large-file') ? writeLargeFile(path.join(root, LARGE_FILE_NAME)) : null;
  const page = htmlPage();
  writeFileSync(path.join(root, PAGE_NAME), page, { mode: 0o644 });
  const expectedPage = expectedBody(page, CONTENT_TYPE);
  const expectedAt = (urlPath: string): ExpectedBody =>
    urlPath === `/${LARGE_FILE_NAME}` ? expectedLarge! : urlPath === `/${PAGE_NAME}` ? expectedPage : expected;

  // Before any server runs, while the machine is quiet: the certificate, and
  // proof that the handshake scenario's wrk makes full handshakes only.
  tlsDir = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-bench-tls-'));
  const tlsSetup: TlsSetup | string = await prepareTls(tlsDir, FULL_HANDSHAKE_SHIM_SOURCE);
  if (typeof tlsSetup === 'string') process.stderr.write(`bench: no HTTPS scenarios: ${tlsSetup}\n`);
  else if (tlsSetup.handshakeProblem !== null) process.stderr.write(`bench: no full-handshake scenario: ${tlsSetup.handshakeProblem}\n`);
  const certificate = typeof tlsSetup === 'string' ? null : tlsSetup.certificate;

  stateDir = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-bench-state-'));
  const set = new ServerSet(tmp, root, stateDir, expected, certificate, installed);
  serverSet = set;
  await set.startUpstream();
  await set.startAll();
  for (const failure of set.failures) process.stderr.write(`bench: not measured: ${failure}\n`);
  const running = set.running;
  const servers = running.map((server) => server.name);

  // What each server negotiates with the library wrk uses: the same protocol, suite, group and signature, or not like for like.
  const tlsNegotiated: Partial<Record<ServerName, Negotiated | string>> = {};
  for (const server of running) {
    const https = server.endpoints.https;
    if (https === undefined) continue;
    tlsNegotiated[server.name] = await negotiated(https.port);
    process.stdout.write(
      `bench: TLS with ${serverLabel('https-keepalive', server.name)}: ${describeNegotiated(tlsNegotiated[server.name]!)}\n`,
    );
  }
  const tlsLines =
    typeof tlsSetup === 'string'
      ? ['HTTPS: not measured (no certificate)']
      : [
          `HTTPS: one certificate for all, ${KEY_DESCRIPTION}; HTTP/1.1 clients (wrk) offer no ALPN; h2load offers h2.`,
          ...Object.entries(tlsNegotiated).map(
            ([server, result]) => `  ${serverLabel('https-keepalive', server as ServerName)}: ${describeNegotiated(result)}`,
          ),
          `TLS handshakes: one request per connection (Connection: close); wrk offers no session (bench/wrk-full-handshake.c): ` +
            `resumed ${describeHandshakes(tlsSetup.resumption?.shimmed)} in the check (wrk alone: ${describeHandshakes(tlsSetup.resumption?.plain)}).`,
        ];

  await sleep(SETTLE_MS);
  const afterStart = memoryOfAll(running);

  // Every cell must serve the right bytes before it is measured.
  const cells = new Map<string, Cell>();
  const key = (scenario: ScenarioName, server: ServerName): string => `${scenario}/${server}`;
  for (const scenario of scenarios) {
    const spec = SCENARIOS[scenario];
    for (const server of spec.servers) {
      if (!servers.includes(server)) continue;
      const target = running.find((candidate) => candidate.name === server)!;
      const cell: Cell = { runs: [] };
      const endpoint = scenarioEndpoint(target, scenario);
      if (endpoint === null) cell.skipped = `no ${spec.transport} endpoint`;
      else if (spec.fullHandshakes && (typeof tlsSetup === 'string' || tlsSetup.fullHandshakeEnv === null))
        cell.skipped = typeof tlsSetup === 'string' ? tlsSetup : (tlsSetup.handshakeProblem ?? 'no full-handshake wrk');
      else {
        const served = await inspectServes(endpoint, spec.host, spec.path, expectedAt(spec.path), spec.acceptEncoding);
        if (typeof served === 'string') cell.skipped = served;
        else cell.served = served;
        if (typeof served !== 'string' && served.coding !== null)
          process.stdout.write(
            `bench: ${spec.label} on ${serverLabel(scenario, server)}: Content-Encoding ${served.coding}, ${served.wireBytes} bytes on the wire\n`,
          );
      }
      if (cell.skipped !== undefined)
        process.stderr.write(`bench: skipping ${spec.label} on ${serverLabel(scenario, server)}: ${cell.skipped}\n`);
      cells.set(key(scenario, server), cell);
    }
  }
  const measured = [...cells.values()].filter((cell) => cell.skipped === undefined).length;
  const plannedSeconds = (settings.rounds * measured + settings.noisyRetries) * (settings.durationSeconds + settings.warmupSeconds + 2);
  process.stdout.write(`bench: ${settings.rounds} rounds x ${measured} cells, ~${Math.round(plannedSeconds / 60)} min of load\n`);
  // Bound the whole run: planned load + start/stop time, then abort.
  setTimeout(
    () => {
      process.stderr.write('bench: over its time budget, aborting\n');
      onSignal('SIGTERM');
    },
    (plannedSeconds + 120) * 1000,
  ).unref();

  const context = {
    tmp,
    upstream: set.upstream,
    fullHandshakeEnv: typeof tlsSetup === 'string' ? null : tlsSetup.fullHandshakeEnv,
    stopping: () => stopping,
  };
  let retriesLeft = settings.noisyRetries;
  const measureCell = async (scenario: ScenarioName, server: ServerName, round: number, rate: number | null): Promise<void> => {
    const cell = cells.get(key(scenario, server));
    if (cell === undefined || cell.skipped !== undefined || stopping) return;
    const target = running.find((candidate) => candidate.name === server);
    if (target === undefined) {
      cell.skipped = `${serverLabel(null, server)} did not start again for round ${round}`;
      process.stderr.write(`bench: ${SCENARIOS[scenario].label} on ${serverLabel(scenario, server)}: ${cell.skipped}\n`);
      return;
    }
    let kept: RunRecord | null = null;
    try {
      // Another process taking CPU mid-run (a test suite, a build) skews that run;
      // repeat it while the retry budget lasts and keep the quietest attempt.
      for (;;) {
        const record = await measureOnce(target, scenario, round, context, rate);
        printRun(record, scenario, server);
        if (kept === null || foreignCpuPercent(record) < foreignCpuPercent(kept)) kept = record;
        if (foreignCpuPercent(record) < FOREIGN_LOAD_WARN_PERCENT || retriesLeft === 0) break;
        retriesLeft -= 1;
        process.stdout.write(`    (other processes used ${foreignCpuPercent(record)}% CPU: repeating this run)\n`);
        await sleep(1000);
      }
    } catch (error) {
      if (stopping) return;
      const state = target.process.exited ? ` (${serverLabel(null, server)} has exited)` : '';
      cell.skipped = `load failed in round ${round}${state}: ${(error as Error).message.trim()}`;
      process.stderr.write(`bench: ${SCENARIOS[scenario].label} on ${serverLabel(scenario, server)}: ${cell.skipped}\n`);
      return;
    }
    cell.runs.push(kept);
  };
  const rotated = <T>(list: readonly T[], round: number): T[] => list.map((_, index) => list[(index + round) % list.length] as T);
  const inRound = (scenario: ScenarioName): ServerName[] =>
    SCENARIOS[scenario].servers.filter((server) => cells.has(key(scenario, server)));

  for (let round = 0; round < settings.rounds; round += 1) {
    if (round > 0 && !stopping) await set.restartVariants();
    for (const scenario of scenarios.filter((name) => name !== 'latency'))
      for (const server of rotated(inRound(scenario), round)) await measureCell(scenario, server, round + 1, null);
  }

  // Latency at a rate every server sustains: half of nginx's static peak (or of the node cluster's without nginx).
  const peakRuns = cells.get(key('static', 'nginx'))?.runs ?? cells.get(key('static', 'node'))?.runs ?? [];
  const peaks = peakRuns.map((run) => run.load.requestsPerSecond).sort((a, b) => a - b);
  const latencyRate = peaks.length === 0 ? null : Math.round(peaks[Math.floor(peaks.length / 2)]! / 2);
  if (scenarios.includes('latency')) {
    if (latencyRate === null)
      for (const server of inRound('latency')) cells.get(key('latency', server))!.skipped = 'no static peak to halve';
    else
      for (let round = 0; round < settings.rounds; round += 1)
        for (const server of rotated(inRound('latency'), round)) await measureCell('latency', server, round + 1, latencyRate);
  }

  // Interrupted: a partial table would read like a result.
  if (stopping) return 130;
  await sleep(SETTLE_MS);
  const memory: MemoryReport = { afterStart, afterRun: memoryOfAll(running), status: await statusMemory(running) };
  const tools = [
    wrk,
    h2load ?? 'no h2load',
    installed.nginx ?? 'no nginx',
    installed.caddy ?? 'no Caddy',
    installed.haproxy ?? 'no HAProxy',
  ].join(', ');
  const report = buildReport(cells, servers, {
    tools,
    upstreamKind: set.upstreamKind,
    failures: set.failures,
    tlsLines,
    memory,
    latencyRate,
  });
  process.stdout.write(`\n${report.text}\n\n${report.markdown}\n`);
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(report.json, null, 2)}\n`);
  process.stdout.write(`\nbench: results written to ${path.relative(REPO_ROOT, RESULTS_FILE)}\n`);
  if (set.failures.length > 0) {
    keepTmp = true;
    return 1;
  }
  return 0;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
  keepTmp = true;
} finally {
  await cleanup();
}
process.exit(exitCode);
