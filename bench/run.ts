/**
 * `npm run bench`: miwidothttp against a bare node:http cluster (the ceiling
 * for a Node server) and nginx (the reference), on a 1 KiB static file,
 * through a reverse proxy to one shared upstream, and over HTTPS: full TLS
 * handshakes per second (one request per connection) and keep-alive
 * throughput, all three servers on the same certificate (bench/tls.ts).
 *
 * A benchmark, not a test: it measures and reports, and fails only when it
 * cannot measure. Servers are driven alternately (round r runs every server
 * once, in an order rotated by r) so drift in the machine's state — thermal,
 * page cache, a noisy neighbour — spreads over all of them instead of
 * landing on whichever ran last. Everything listens on 127.0.0.1 only.
 *
 * Environment: BENCH_ROUNDS (3), BENCH_DURATION (5 s), BENCH_WARMUP (1 s),
 * BENCH_CONNECTIONS (50), BENCH_THREADS (1), BENCH_NOISY_RETRIES (6: runs
 * during which other processes took >= 15% CPU are repeated, this many
 * times in all), BENCH_NGINX (/usr/sbin/nginx; "off": no nginx, node
 * upstream), BENCH_KEEP_TMP=1 keeps the temp dirs (configs, logs, certificate).
 * HTTPS needs the openssl command (the certificate) and cc (the wrk shim for
 * full handshakes); without them those cells are skipped, with the reason.
 */
import { closeSync, chmodSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { NGINX_BINARY, nginxVersion, referenceConfig, upstreamConfig } from './nginx.js';
import {
  connectionsByProcess,
  cpuBetween,
  killAllSync,
  runCommand,
  snapshotCpu,
  startProcess,
  stopAll,
  stopProcess,
  type CpuSnapshot,
  type CpuUsage,
  type Tracked,
} from './procs.js';
import {
  buildFullHandshakeShim,
  countResumptions,
  KEY_DESCRIPTION,
  makeCertificate,
  negotiated,
  TLS_HOST,
  type BenchCertificate,
  type HandshakeCount,
  type Negotiated,
} from './tls.js';
import { killWrk, runWrk, wrkVersion, type WrkResult } from './wrk.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO_ROOT, 'bin', 'miwidothttp');
const NODE_CLUSTER = path.join(REPO_ROOT, 'dist', 'bench', 'node-cluster.js');
const PIPELINE_SERVER = path.join(REPO_ROOT, 'dist', 'bench', 'pipeline-server.js');
const RESULTS_FILE = path.join(REPO_ROOT, 'bench', 'results', 'latest.json');
const FULL_HANDSHAKE_SHIM_SOURCE = path.join(REPO_ROOT, 'bench', 'wrk-full-handshake.c');

const FILE_NAME = '1k.html';
const FILE_BYTES = 1024;
const CONTENT_TYPE = 'text/html';
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;
/** CPU used by processes outside the benchmark above which a run is flagged as noisy. */
const FOREIGN_LOAD_WARN_PERCENT = 15;

function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new Error(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  }
  return Number(raw);
}

const settings = {
  rounds: envInt('BENCH_ROUNDS', 3, 1, 20),
  durationSeconds: envInt('BENCH_DURATION', 5, 1, 60),
  warmupSeconds: envInt('BENCH_WARMUP', 1, 0, 30),
  connections: envInt('BENCH_CONNECTIONS', 50, 1, 10_000),
  threads: envInt('BENCH_THREADS', 1, 1, 64),
  /** Repeats allowed, over the whole run, of runs disturbed by foreign CPU load. */
  noisyRetries: envInt('BENCH_NOISY_RETRIES', 6, 0, 100),
  workers: 2,
};

/** The miwidothttp instances, each through the real CLI: as configured by default, with rate limiting, with the IDS. */
type Instance = 'miwidothttp' | 'miwidothttp-ratelimit';
/** The worker's code alone (bench/pipeline-server.ts), one worker each. */
type Variant = 'pipeline-full' | 'pipeline-off' | 'pipeline-ids';
type ServerName = Instance | Variant | 'node' | 'nginx';
const INSTANCES: readonly Instance[] = ['miwidothttp', 'miwidothttp-ratelimit'];
type ScenarioName = 'static' | 'proxy' | 'tls-handshake' | 'https-keepalive';

const SERVER_LABEL: Record<ServerName, string> = {
  miwidothttp: 'miwidothttp',
  'miwidothttp-ratelimit': '+ rate limiting',
  node: 'node:http cluster',
  nginx: 'nginx',
  'pipeline-full': 'stages on',
  'pipeline-off': 'stages off',
  'pipeline-ids': 'stages on + IDS',
};
const SCENARIO_LABEL: Record<ScenarioName, string> = {
  static: 'static 1 KiB',
  proxy: 'proxy 1 KiB',
  'tls-handshake': 'TLS handshakes',
  'https-keepalive': 'HTTPS keep-alive',
};
const SCENARIO_HOST: Record<ScenarioName, string> = {
  static: 'static.test',
  proxy: 'proxy.test',
  'tls-handshake': TLS_HOST,
  'https-keepalive': TLS_HOST,
};
/**
 * The HTTPS scenarios, both on the 1 KiB static file. "TLS handshakes": every
 * request on a new connection (`Connection: close`), through a wrk that
 * offers no session (bench/wrk-full-handshake.c), so req/s is full
 * handshakes per second. "HTTPS keep-alive": wrk as it comes, connections
 * kept open (the servers' limit of 1000 requests each brings a reconnection,
 * resumed when the server allows it, as a returning browser's would be).
 */
const TLS_SCENARIOS: ReadonlySet<ScenarioName> = new Set(['tls-handshake', 'https-keepalive']);
/**
 * "stages on/off/+ IDS": the worker's server code outside master and
 * sandbox (bench/pipeline-server.ts), with the full pipeline, with the route
 * stage alone, and with the full pipeline and the IDS: what the hardening
 * stages and the IDS cost, everything else equal. One worker each, so that
 * how the kernel spreads wrk's connections over two workers (which can swing
 * a run by 15 %) does not drown the difference being measured.
 */
const SERVERS: readonly ServerName[] = [
  'miwidothttp',
  'node',
  'nginx',
  'miwidothttp-ratelimit',
  'pipeline-full',
  'pipeline-off',
  'pipeline-ids',
];
const SCENARIOS: readonly ScenarioName[] = ['static', 'proxy', 'tls-handshake', 'https-keepalive'];
/** TLS is measured where it compares like with like: the default miwidothttp, the Node ceiling, nginx. */
const TLS_SERVERS: readonly ServerName[] = ['miwidothttp', 'node', 'nginx'];
/** The node cluster serves the TLS scenarios through node:https. */
function serverLabel(scenario: ScenarioName, server: ServerName): string {
  return server === 'node' && TLS_SCENARIOS.has(scenario) ? 'node:https cluster' : SERVER_LABEL[server];
}
function scenarioServers(scenario: ScenarioName, servers: readonly ServerName[]): ServerName[] {
  return TLS_SCENARIOS.has(scenario) ? servers.filter((server) => TLS_SERVERS.includes(server)) : [...servers];
}

interface RunningServer {
  readonly name: ServerName;
  readonly port: number;
  /** Where it serves static.test over HTTPS; null when it does not. */
  readonly httpsPort: number | null;
  readonly process: Tracked;
}

/** Where a check or a load goes: a port, over TLS (verifying the benchmark certificate) or not. */
interface Endpoint {
  readonly port: number;
  readonly tls: BenchCertificate | null;
}

interface RunRecord {
  readonly round: number;
  readonly wrk: WrkResult;
  readonly cpu: CpuUsage[];
  /**
   * wrk's connections per worker (pid -> count) just after the start and at
   * mid-run: a shared accept socket can hand most of a burst of connects to
   * one worker, and only connection turnover (max requests per connection)
   * spreads them again.
   */
  readonly connections: { early: Record<number, number>; middle: Record<number, number> };
}

interface Cell {
  skipped?: string;
  runs: RunRecord[];
}

// ---------------------------------------------------------------- helpers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface Fetched {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly body: Buffer;
}

/**
 * One GET. Over TLS the certificate must verify against the benchmark's own
 * for static.test: proof that the server presents the shared certificate.
 */
function fetchOnce(endpoint: Endpoint, host: string, urlPath: string): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port: endpoint.port, path: urlPath, headers: { host }, agent: false, timeout: 2000 };
    const get = endpoint.tls === null ? http.get : https.get;
    const tlsOptions = endpoint.tls === null ? {} : { ca: endpoint.tls.certPem, servername: host };
    const request = get({ ...options, ...tlsOptions }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, contentType: response.headers['content-type'], body: Buffer.concat(chunks) }),
      );
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
  });
}

/** Why `endpoint` does not serve the benchmark file for `host`, or null when it does. */
async function checkServes(endpoint: Endpoint, host: string, expected: Buffer): Promise<string | null> {
  const scheme = endpoint.tls === null ? '' : 'HTTPS ';
  try {
    const got = await fetchOnce(endpoint, host, `/${FILE_NAME}`);
    if (got.status !== 200) return `${scheme}GET /${FILE_NAME} (Host: ${host}) answered ${got.status}`;
    if (!got.body.equals(expected))
      return `${scheme}GET /${FILE_NAME} (Host: ${host}) answered ${got.body.length} bytes that differ from the file`;
    if (!(got.contentType ?? '').startsWith(CONTENT_TYPE)) return `Content-Type is "${got.contentType}", expected ${CONTENT_TYPE}`;
    return null;
  } catch (error) {
    return `${scheme}GET /${FILE_NAME} (Host: ${host}) failed: ${(error as Error).message}`;
  }
}

async function waitUntilServes(entry: Tracked, endpoint: Endpoint, host: string, expected: Buffer, logFile?: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let why: string | null = 'not started';
  while (Date.now() < deadline) {
    if (entry.exited) break;
    why = await checkServes(endpoint, host, expected);
    if (why === null) return;
    await sleep(100);
  }
  const exited = entry.exited
    ? `exited (code ${entry.child.exitCode ?? entry.child.signalCode})`
    : `not serving after ${START_TIMEOUT_MS / 1000} s`;
  const log = logFile === undefined ? '' : `\n--- last lines of ${logFile} ---\n${tail(logFile, 15)}`;
  throw new Error(`${entry.name} ${exited}: ${why}${log}`);
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** 1024 bytes of plain HTML, the same on every server. */
function benchmarkFile(): Buffer {
  const head = '<!DOCTYPE html>\n<html><head><title>1 KiB</title></head><body><p>\n';
  const foot = '\n</p></body></html>\n';
  const filler = 'miwidothttp benchmark 1 KiB body. '.repeat(64).slice(0, FILE_BYTES - head.length - foot.length);
  const bytes = Buffer.from(head + filler + foot, 'latin1');
  if (bytes.length !== FILE_BYTES) throw new Error(`benchmark file is ${bytes.length} bytes`);
  return bytes;
}

/** Extra config per instance: what each measures on top of the default. */
const INSTANCE_CONFIG: Record<Instance, string> = {
  miwidothttp: '',
  // Limits that never refuse: what asking the master and spending leases costs.
  'miwidothttp-ratelimit': '[security.rate_limiting]\nenabled = true\nrequests_per_second = 10000000\nburst_size = 10000000\n',
};

/** HTTPS for an instance: its port and the shared certificate. */
interface InstanceTls {
  readonly httpsPort: number;
  readonly certificate: BenchCertificate;
}

function miwidothttpConfig(
  tmp: string,
  port: number,
  upstreamPort: number,
  sandboxed = true,
  extra = '',
  name = 'm',
  tls: InstanceTls | null = null,
): string {
  return `# Generated by bench/run.ts for one benchmark run.
${sandboxed ? '' : '# Not sandboxed: read by bench/pipeline-server.js, which runs the worker code alone.\n'}${extra}
[server]
bind_address = "127.0.0.1"
http_port = ${port}
${
  tls === null
    ? ''
    : `https_port = ${tls.httpsPort}
`
}workers = ${settings.workers}
pid_file = "${tmp}/${name}.pid"
state_dir = "${tmp}/${name}-state"
shutdown_timeout = 5
# nginx here runs with access_log off and error_log at warn.
log_level = "warn"

${
  sandboxed
    ? `[process.isolation]
# Measured as it runs in production: workers as nobody, jailed, under seccomp, in their own cgroups.
chroot = "${tmp}"`
    : ''
}

[security.timeouts]
# wrk opens all its connections in the same instant, from one IP; the
# default limit on new connections per second per IP is a defence that
# would trip on the load generator itself.
connection_rate_per_ip = 1000000

${
  tls === null
    ? ''
    : `# The certificate nginx and the node:https cluster serve too. TLS policy,
# session tickets and timeouts are miwidothttp's defaults.
[ssl.domains."${TLS_HOST}"]
cert_file = "${tls.certificate.certFile}"
key_file = "${tls.certificate.keyFile}"
`
}
[[vhosts]]
domains = ["static.test"]
root = "${tmp}"

[[vhosts]]
domains = ["proxy.test"]

[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${upstreamPort}"
`;
}

// ---------------------------------------------------------------- lifecycle

let tmpDir: string | null = null;
/** The certificate, its key and the wrk shim: apart from tmpDir, which nginx (as root) serves files from. */
let tlsDir: string | null = null;
let keepTmp = process.env.BENCH_KEEP_TMP === '1';
/** Started instances: config file and process, stopped through the CLI at the end. */
const instances: { configFile: string; process: Tracked }[] = [];
let cleanupPromise: Promise<void> | null = null;

/** Set once cleanup began: no new load may start after it. */
let stopping = false;

function cleanup(): Promise<void> {
  stopping = true;
  cleanupPromise ??= (async () => {
    killWrk();
    for (const instance of instances) {
      if (instance.process.exited) continue;
      const stopped = await runCommand(CLI, ['stop', '-c', instance.configFile], STOP_TIMEOUT_MS);
      if (stopped.code !== 0) process.stderr.write(`bench: miwidothttp stop exited ${stopped.code}: ${stopped.output.trim()}\n`);
      await stopProcess(instance.process, 2000);
    }
    await stopAll(3000);
    for (const dir of [tmpDir, tlsDir]) {
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
  killWrk();
  killAllSync();
});

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const wrk = wrkVersion();
  if (wrk === null) {
    process.stderr.write(
      'bench: wrk is not installed, so nothing can be measured.\n' +
        '       Install it (Debian/Ubuntu: `apt-get install -y wrk`, macOS: `brew install wrk`) and run `npm run bench` again.\n',
    );
    return 1;
  }
  const nginx = nginxVersion();
  if (nginx === null)
    process.stderr.write(
      `bench: nginx (${NGINX_BINARY}) not available: no nginx column, and the upstream is a node:http server. (apt-get install -y nginx)\n`,
    );

  const servers: ServerName[] = SERVERS.filter((name) => name !== 'nginx' || nginx !== null);
  const runsPlanned = settings.rounds * SCENARIOS.reduce((sum, scenario) => sum + scenarioServers(scenario, servers).length, 0);
  const plannedSeconds = (runsPlanned + settings.noisyRetries) * (settings.durationSeconds + settings.warmupSeconds + 1);
  // Bound the whole run: planned load + start/stop time, then abort.
  const watchdog = setTimeout(
    () => {
      process.stderr.write('bench: over its time budget, aborting\n');
      onSignal('SIGTERM');
    },
    (plannedSeconds + 90) * 1000,
  );
  watchdog.unref();

  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-bench-'));
  chmodSync(tmpDir, 0o755);
  const tmp = tmpDir;
  const expected = benchmarkFile();
  writeFileSync(path.join(tmp, FILE_NAME), expected, { mode: 0o644 });
  const wwwRoot = tmp;

  const ports = { upstream: await freePort() } as Record<ServerName | 'upstream', number>;
  for (const name of SERVERS) ports[name] = await freePort();

  // Before any server runs, while the machine is quiet: the certificate, and
  // proof that the handshake scenario's wrk makes full handshakes only.
  tlsDir = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-bench-tls-'));
  const tlsSetup = await prepareTls(tlsDir);
  if (typeof tlsSetup === 'string') process.stderr.write(`bench: no HTTPS scenarios: ${tlsSetup}\n`);
  else {
    const { plain, shimmed } = tlsSetup.resumption ?? {};
    process.stdout.write(
      `bench: TLS certificate ${KEY_DESCRIPTION}; wrk with Connection: close resumed ${describeHandshakes(plain)} as it comes, ` +
        `${describeHandshakes(shimmed)} with bench/wrk-full-handshake.c\n`,
    );
    if (tlsSetup.handshakeProblem !== null) process.stderr.write(`bench: no full-handshake scenario: ${tlsSetup.handshakeProblem}\n`);
  }
  const certificate = typeof tlsSetup === 'string' ? null : tlsSetup.certificate;
  const httpsPorts = new Map<ServerName, number>();
  if (certificate !== null) for (const name of TLS_SERVERS) httpsPorts.set(name, await freePort());
  const httpsEndpoint = (name: ServerName): Endpoint | null => {
    const port = httpsPorts.get(name);
    return port === undefined || certificate === null ? null : { port, tls: certificate };
  };

  // The upstream both proxies share: nginx when installed, so it is not the bottleneck of either.
  let upstream: Tracked;
  let upstreamKind: string;
  if (nginx !== null) {
    const conf = path.join(tmp, 'upstream.conf');
    writeFileSync(conf, upstreamConfig({ prefix: tmp, workerProcesses: 1, port: ports.upstream, root: wwwRoot }));
    upstream = startProcess('upstream (nginx)', NGINX_BINARY, ['-p', tmp, '-e', path.join(tmp, 'upstream-error.log'), '-c', conf]);
    upstreamKind = 'nginx, 1 worker';
  } else {
    upstream = startProcess('upstream (node)', process.execPath, [
      NODE_CLUSTER,
      '--port',
      String(ports.upstream),
      '--file',
      path.join(tmp, FILE_NAME),
      '--workers',
      '1',
    ]);
    upstreamKind = 'node:http, 1 process';
  }
  await waitUntilServes(
    upstream,
    { port: ports.upstream, tls: null },
    'upstream',
    expected,
    nginx !== null ? path.join(tmp, 'upstream-error.log') : undefined,
  );

  // miwidothttp, through its real CLI.
  const running: RunningServer[] = [];
  const failures: string[] = [];
  for (const instance of INSTANCES) {
    const configFile = path.join(tmp, `${instance}.toml`);
    const instanceHttps = httpsEndpoint(instance);
    const instanceTls = instanceHttps === null || certificate === null ? null : { httpsPort: instanceHttps.port, certificate };
    writeFileSync(
      configFile,
      miwidothttpConfig(tmp, ports[instance], ports.upstream, true, INSTANCE_CONFIG[instance], instance, instanceTls),
    );
    const logFile = path.join(tmp, `${instance}.log`);
    const check = await runCommand(CLI, ['check', '-c', configFile], 15_000);
    if (check.code !== 0) {
      failures.push(`miwidothttp check -c ${configFile} exited ${check.code}:\n${check.output.trim()}`);
      continue;
    }
    const logFd = openSync(logFile, 'a');
    const started = startProcess(SERVER_LABEL[instance], CLI, ['start', '-c', configFile], {
      cwd: REPO_ROOT,
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    instances.push({ configFile, process: started });
    try {
      await waitUntilServes(started, { port: ports[instance], tls: null }, 'static.test', expected, logFile);
      if (instanceHttps !== null) await waitUntilServes(started, instanceHttps, TLS_HOST, expected, logFile);
      running.push({ name: instance, port: ports[instance], httpsPort: instanceHttps?.port ?? null, process: started });
    } catch (error) {
      failures.push((error as Error).message);
    }
  }

  // The ceiling for Node.
  const nodeHttps = httpsEndpoint('node');
  const node = startProcess('node:http cluster', process.execPath, [
    NODE_CLUSTER,
    '--port',
    String(ports.node),
    '--file',
    path.join(tmp, FILE_NAME),
    '--workers',
    String(settings.workers),
    '--upstream',
    `127.0.0.1:${ports.upstream}`,
    '--content-type',
    CONTENT_TYPE,
    ...(nodeHttps === null || certificate === null
      ? []
      : ['--https-port', String(nodeHttps.port), '--cert', certificate.certFile, '--key', certificate.keyFile]),
  ]);
  await waitUntilServes(node, { port: ports.node, tls: null }, 'static.test', expected);
  if (nodeHttps !== null) await waitUntilServes(node, nodeHttps, TLS_HOST, expected);
  running.push({ name: 'node', port: ports.node, httpsPort: nodeHttps?.port ?? null, process: node });

  // The reference.
  if (nginx !== null) {
    const conf = path.join(tmp, 'nginx.conf');
    const nginxHttps = httpsEndpoint('nginx');
    const tls =
      nginxHttps === null || certificate === null
        ? {}
        : { tls: { port: nginxHttps.port, certFile: certificate.certFile, keyFile: certificate.keyFile } };
    writeFileSync(
      conf,
      referenceConfig({
        prefix: tmp,
        workerProcesses: settings.workers,
        port: ports.nginx,
        root: wwwRoot,
        upstreamPort: ports.upstream,
        ...tls,
      }),
    );
    const reference = startProcess('nginx', NGINX_BINARY, ['-p', tmp, '-e', path.join(tmp, 'nginx-error.log'), '-c', conf]);
    await waitUntilServes(reference, { port: ports.nginx, tls: null }, 'static.test', expected, path.join(tmp, 'nginx-error.log'));
    if (nginxHttps !== null) await waitUntilServes(reference, nginxHttps, TLS_HOST, expected, path.join(tmp, 'nginx-error.log'));
    running.push({ name: 'nginx', port: ports.nginx, httpsPort: nginxHttps?.port ?? null, process: reference });
  }

  // The stages' cost: the same worker code with and without them.
  for (const variant of ['pipeline-full', 'pipeline-off', 'pipeline-ids'] as const) {
    const conf = path.join(tmp, `${variant}.toml`);
    writeFileSync(
      conf,
      miwidothttpConfig(
        tmp,
        ports[variant],
        ports.upstream,
        false,
        variant === 'pipeline-ids' ? '[security.ids]\nenabled = true\n' : '',
        variant,
      ),
    );
    const pipelineArg = variant === 'pipeline-off' ? 'routing-only' : 'full';
    const log = path.join(tmp, `${variant}.log`);
    const logFd = openSync(log, 'a');
    const variantProcess = startProcess(
      SERVER_LABEL[variant],
      process.execPath,
      [PIPELINE_SERVER, '--config', conf, '--pipeline', pipelineArg, '--workers', '1'],
      {
        stdio: ['ignore', logFd, logFd],
      },
    );
    closeSync(logFd);
    await waitUntilServes(variantProcess, { port: ports[variant], tls: null }, 'static.test', expected, log);
    running.push({ name: variant, port: ports[variant], httpsPort: null, process: variantProcess });
  }

  for (const failure of failures) process.stderr.write(`bench: miwidothttp is not measured: ${failure}\n`);

  // What each server negotiates with the library wrk uses: the same
  // protocol, suite, group and signature everywhere, or it is not like for like.
  const fullHandshakeEnv = typeof tlsSetup === 'string' ? null : tlsSetup.fullHandshakeEnv;
  const tlsNegotiated: Partial<Record<ServerName, Negotiated | string>> = {};
  for (const target of running) {
    if (target.httpsPort === null) continue;
    const result = await negotiated(target.httpsPort);
    tlsNegotiated[target.name] = result;
    process.stdout.write(`bench: TLS with ${serverLabel('https-keepalive', target.name)}: ${describeNegotiated(result)}\n`);
  }
  const distinct = new Set(
    Object.values(tlsNegotiated).map((result) =>
      typeof result === 'string' ? result : `${result.protocol} ${result.cipher} ${result.keyExchange}`,
    ),
  );
  if (distinct.size > 1)
    process.stderr.write(
      'bench: WARNING: the servers negotiate different TLS parameters (above); the HTTPS comparison is not like for like\n',
    );

  // Every cell must serve the right bytes before it is measured: a fast 404 is not a result.
  const cells = new Map<string, Cell>();
  const key = (scenario: ScenarioName, server: ServerName): string => `${scenario}/${server}`;
  for (const scenario of SCENARIOS) {
    for (const server of scenarioServers(scenario, servers)) {
      const target = running.find((candidate) => candidate.name === server);
      const cell: Cell = { runs: [] };
      const endpoint = target === undefined ? null : scenarioEndpoint(target, scenario, certificate);
      if (target === undefined) cell.skipped = 'not running';
      else if (typeof tlsSetup === 'string' && TLS_SCENARIOS.has(scenario)) cell.skipped = tlsSetup;
      else if (typeof tlsSetup !== 'string' && scenario === 'tls-handshake' && tlsSetup.handshakeProblem !== null)
        cell.skipped = tlsSetup.handshakeProblem;
      else if (endpoint === null) cell.skipped = 'no HTTPS listener';
      else {
        const why = await checkServes(endpoint, SCENARIO_HOST[scenario], expected);
        if (why !== null) cell.skipped = why;
      }
      if (cell.skipped !== undefined)
        process.stderr.write(`bench: skipping ${SCENARIO_LABEL[scenario]} on ${SERVER_LABEL[server]}: ${cell.skipped}\n`);
      cells.set(key(scenario, server), cell);
    }
  }

  const measured = [...cells.values()].filter((cell) => cell.skipped === undefined).length;
  process.stdout.write(
    `bench: ${settings.rounds} rounds x ${measured} cells, wrk -t${settings.threads} -c${settings.connections} -d${settings.durationSeconds}s ` +
      `(+${settings.warmupSeconds}s warm-up), ~${settings.rounds * measured * (settings.durationSeconds + settings.warmupSeconds)} s of load\n`,
  );

  let retriesLeft = settings.noisyRetries;
  for (let round = 0; round < settings.rounds; round += 1) {
    for (const scenario of SCENARIOS) {
      // Rotate the order each round so no server always runs first or last.
      const measuredHere = scenarioServers(scenario, servers);
      const order = measuredHere.map((_, index) => measuredHere[(index + round) % measuredHere.length] as ServerName);
      for (const server of order) {
        const cell = cells.get(key(scenario, server)) as Cell;
        if (cell.skipped !== undefined || stopping) continue;
        const target = running.find((candidate) => candidate.name === server) as RunningServer;
        let kept: RunRecord | null = null;
        try {
          // Another process taking CPU mid-run (a test suite, a build) skews that run;
          // repeat it while the retry budget lasts and keep the quietest attempt.
          for (;;) {
            const record = await measureOnce(
              target,
              scenario,
              scenario === 'proxy' ? upstream : null,
              round + 1,
              certificate,
              fullHandshakeEnv,
            );
            printRun(record, scenario, server);
            if (kept === null || foreignCpuPercent(record) < foreignCpuPercent(kept)) kept = record;
            if (foreignCpuPercent(record) < FOREIGN_LOAD_WARN_PERCENT || retriesLeft === 0) break;
            retriesLeft -= 1;
            process.stdout.write(`    (other processes used ${foreignCpuPercent(record)}% CPU: repeating this run)\n`);
            await sleep(1000);
          }
        } catch (error) {
          if (stopping) continue;
          const state = target.process.exited ? ` (${SERVER_LABEL[server]} has exited)` : '';
          cell.skipped = `wrk failed in round ${round + 1}${state}: ${(error as Error).message.trim()}`;
          process.stderr.write(`bench: ${SCENARIO_LABEL[scenario]} on ${SERVER_LABEL[server]}: ${cell.skipped}\n`);
          continue;
        }
        cell.runs.push(kept);
      }
    }
  }

  // Interrupted: a partial table would read like a result.
  if (stopping) return 130;
  const tlsReport: TlsReport | null =
    typeof tlsSetup === 'string'
      ? null
      : {
          certificate: KEY_DESCRIPTION,
          resumptionCheck: tlsSetup.resumption,
          handshakeProblem: tlsSetup.handshakeProblem,
          negotiated: tlsNegotiated,
        };
  const report = buildReport(cells, servers, { wrk, nginx, upstreamKind, failures, ports, tls: tlsReport });
  process.stdout.write(`\n${report.text}\n\n${report.markdown}\n`);
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(report.json, null, 2)}\n`);
  process.stdout.write(`\nbench: results written to ${path.relative(REPO_ROOT, RESULTS_FILE)}\n`);

  if (failures.length > 0) {
    keepTmp = true;
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------- TLS

interface TlsSetup {
  readonly certificate: BenchCertificate;
  /** wrk's environment for full handshakes (the shim preloaded); null when that could not be arranged. */
  readonly fullHandshakeEnv: NodeJS.ProcessEnv | null;
  /** Why the handshake scenario cannot run, or null. */
  readonly handshakeProblem: string | null;
  /** Handshakes counted with wrk as it comes and with the shim; null when the shim did not build. */
  readonly resumption: { plain: HandshakeCount; shimmed: HandshakeCount } | null;
}

/**
 * The certificate, and a wrk that makes full handshakes only, checked
 * against a server that resumes: a string when there is no certificate (no
 * HTTPS scenario then), `handshakeProblem` when only full handshakes cannot
 * be measured.
 */
async function prepareTls(dir: string): Promise<TlsSetup | string> {
  chmodSync(dir, 0o700);
  let certificate: BenchCertificate;
  try {
    certificate = await makeCertificate(dir);
  } catch (error) {
    return (error as Error).message;
  }
  try {
    const shim = await buildFullHandshakeShim(FULL_HANDSHAKE_SHIM_SOURCE, dir);
    const env = {
      ...process.env,
      LD_PRELOAD: [shim, process.env.LD_PRELOAD].filter((entry) => entry !== undefined && entry !== '').join(' '),
    };
    const resumption = await countResumptions(certificate, readFileSync(certificate.keyFile), env);
    const { shimmed } = resumption;
    if (shimmed.resumed > 0 || shimmed.full === 0) {
      return {
        certificate,
        fullHandshakeEnv: null,
        handshakeProblem: `wrk with the shim still resumed ${describeHandshakes(shimmed)}`,
        resumption,
      };
    }
    return { certificate, fullHandshakeEnv: env, handshakeProblem: null, resumption };
  } catch (error) {
    return { certificate, fullHandshakeEnv: null, handshakeProblem: (error as Error).message, resumption: null };
  }
}

function describeHandshakes(count: HandshakeCount | undefined): string {
  return count === undefined ? 'n/a' : `${count.resumed} of ${count.full + count.resumed} handshakes`;
}

function describeNegotiated(result: Negotiated | string): string {
  return typeof result === 'string'
    ? result
    : `${result.protocol} ${result.cipher}, key exchange ${result.keyExchange}, signature ${result.signature}`;
}

/** Where `scenario` sends its load on `target`; null for a TLS scenario on a server without HTTPS. */
function scenarioEndpoint(target: RunningServer, scenario: ScenarioName, certificate: BenchCertificate | null): Endpoint | null {
  if (!TLS_SCENARIOS.has(scenario)) return { port: target.port, tls: null };
  return target.httpsPort === null || certificate === null ? null : { port: target.httpsPort, tls: certificate };
}

// ---------------------------------------------------------------- one run

/**
 * wrk's CPU in percent of one core above which (times its threads) a run is
 * limited by the client: a full TLS handshake costs the client more than the
 * server (it verifies the server's signature), so one wrk thread can run out
 * before two server workers do.
 */
const CLIENT_BOUND_PERCENT = 90;

function wrkCpuPercent(run: RunRecord): number {
  return run.cpu.filter((usage) => usage.role === 'wrk' || usage.role === 'wrk/child').reduce((sum, usage) => sum + usage.cpuPercent, 0);
}

function foreignCpuPercent(run: RunRecord): number {
  return run.cpu.find((usage) => usage.role === 'other')?.cpuPercent ?? 0;
}

/** CPU the server under test used (master and workers), in percent of one core. */
function serverCpuPercent(run: RunRecord, server: ServerName): number {
  return run.cpu
    .filter((usage) => usage.role === server || usage.role === `${server}/child`)
    .reduce((sum, usage) => sum + usage.cpuPercent, 0);
}

/** Server CPU time per request: less sensitive to a busy machine than req/s. */
function cpuMicrosPerRequest(run: RunRecord, server: ServerName): number {
  return run.wrk.requestsPerSecond === 0 ? 0 : ((serverCpuPercent(run, server) / 100) * 1e6) / run.wrk.requestsPerSecond;
}

/** Warm up, then one measured wrk run with CPU and connection samples taken inside it. */
async function measureOnce(
  target: RunningServer,
  scenario: ScenarioName,
  upstream: Tracked | null,
  round: number,
  certificate: BenchCertificate | null,
  fullHandshakeEnv: NodeJS.ProcessEnv | null,
): Promise<RunRecord> {
  const endpoint = scenarioEndpoint(target, scenario, certificate);
  if (endpoint === null) throw new Error(`${SERVER_LABEL[target.name]} has no HTTPS listener`);
  const port = endpoint.port;
  const url = `${endpoint.tls === null ? 'http' : 'https'}://127.0.0.1:${port}/${FILE_NAME}`;
  const host = SCENARIO_HOST[scenario];
  if (stopping) throw new Error('stopping');
  const load = {
    url,
    host,
    threads: settings.threads,
    connections: settings.connections,
    ...(scenario === 'tls-handshake' ? { headers: ['Connection: close'], env: fullHandshakeEnv ?? undefined } : {}),
  };
  if (settings.warmupSeconds > 0) await runWrk({ ...load, durationSeconds: settings.warmupSeconds });
  if (stopping) throw new Error('stopping');

  const roots: Array<{ pid: number; role: string; withChildren?: boolean }> = [
    { pid: target.process.pid, role: target.name },
    { pid: process.pid, role: 'bench', withChildren: false },
  ];
  if (upstream !== null) roots.push({ pid: upstream.pid, role: 'upstream' });
  let first: CpuSnapshot | null = null;
  let last: CpuSnapshot | null = null;
  const connections: RunRecord['connections'] = { early: {}, middle: {} };
  const timers: NodeJS.Timeout[] = [];
  try {
    const wrk = await runWrk({
      ...load,
      durationSeconds: settings.durationSeconds,
      onStart: (wrkPid) => {
        // Sample inside the run window, clear of wrk's connect and exit.
        const withWrk = [...roots, { pid: wrkPid, role: 'wrk' }];
        const marginMs = Math.min(500, (settings.durationSeconds * 1000) / 4);
        timers.push(
          setTimeout(() => {
            first = snapshotCpu(withWrk);
            connections.early = connectionsByProcess(target.process.pid, port);
          }, marginMs),
        );
        timers.push(
          setTimeout(() => (connections.middle = connectionsByProcess(target.process.pid, port)), settings.durationSeconds * 500),
        );
        timers.push(setTimeout(() => (last = snapshotCpu(withWrk)), settings.durationSeconds * 1000 - marginMs));
      },
    });
    const cpu = first !== null && last !== null ? cpuBetween(first, last) : [];
    return { round, wrk, cpu, connections };
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
}

function printRun(run: RunRecord, scenario: ScenarioName, server: ServerName): void {
  const { wrk } = run;
  const errors = wrk.non2xx3xx + Object.values(wrk.socketErrors).reduce((a, b) => a + b, 0);
  process.stdout.write(
    `  round ${run.round}  ${SCENARIO_LABEL[scenario].padEnd(16)} ${serverLabel(scenario, server).padEnd(18)} ` +
      `${wrk.requestsPerSecond.toFixed(0).padStart(7)} req/s  p99 ${formatMs(wrk.p99Ms).padStart(9)}  ` +
      `${cpuMicrosPerRequest(run, server).toFixed(1).padStart(5)} us cpu/req` +
      `${errors > 0 ? `  (${wrk.non2xx3xx} non-2xx, socket errors ${JSON.stringify(wrk.socketErrors)})` : ''}` +
      `  | cpu ${formatCpu(run.cpu)} | conns/worker [${Object.values(run.connections.early).join(' ')}] then [${Object.values(run.connections.middle).join(' ')}]\n`,
  );
}

// ---------------------------------------------------------------- report

function formatMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} us` : `${ms.toFixed(2)} ms`;
}

/** "miwidothttp 12% + 85% 80%, wrk 95%": per role, the root first then its children. */
function formatCpu(cpu: readonly CpuUsage[]): string {
  const byRole = new Map<string, CpuUsage[]>();
  for (const usage of cpu) {
    const role = usage.role.replace(/\/child$/, '');
    byRole.set(role, [...(byRole.get(role) ?? []), usage]);
  }
  return [...byRole.entries()]
    .map(([role, usages]) => {
      const root = usages.find((usage) => usage.role === role);
      const children = usages.filter((usage) => usage.role !== role).map((usage) => `${usage.cpuPercent}%`);
      return `${role} ${root?.cpuPercent ?? 0}%${children.length > 0 ? ` [${children.join(' ')}]` : ''}`;
    })
    .join(', ');
}

/** How the HTTPS scenarios were set up, for the report. */
interface TlsReport {
  readonly certificate: string;
  /** wrk with `Connection: close` against a Node server that issues tickets: as it comes, and with the shim. */
  readonly resumptionCheck: { plain: HandshakeCount; shimmed: HandshakeCount } | null;
  readonly handshakeProblem: string | null;
  readonly negotiated: Partial<Record<ServerName, Negotiated | string>>;
}

/** Session resumption as each server is configured; the handshake scenario's client never offers a session. */
const TLS_SESSIONS: Partial<Record<ServerName, string>> = {
  miwidothttp: 'its defaults: stateless session tickets, one key shared by all workers, rotated by the master',
  node: "Node's defaults: session tickets, a key per worker process",
  nginx: 'Mozilla intermediate: shared session cache 10m, timeout 1d, tickets off',
};

interface Context {
  readonly wrk: string;
  readonly nginx: string | null;
  readonly upstreamKind: string;
  readonly failures: readonly string[];
  readonly ports: Record<string, number>;
  readonly tls: TlsReport | null;
}

function buildReport(
  cells: Map<string, Cell>,
  servers: readonly ServerName[],
  context: Context,
): { text: string; markdown: string; json: unknown } {
  const summary = (
    scenario: ScenarioName,
    server: ServerName,
  ): { rps: number; p99Ms: number; cpuMicros: number; errors: number; clientBound: boolean } | null => {
    const cell = cells.get(`${scenario}/${server}`);
    if (cell === undefined || cell.runs.length === 0) return null;
    const errors = cell.runs.reduce(
      (sum, run) => sum + run.wrk.non2xx3xx + Object.values(run.wrk.socketErrors).reduce((a, b) => a + b, 0),
      0,
    );
    return {
      rps: median(cell.runs.map((run) => run.wrk.requestsPerSecond)),
      p99Ms: median(cell.runs.map((run) => run.wrk.p99Ms)),
      cpuMicros: median(cell.runs.map((run) => cpuMicrosPerRequest(run, server))),
      errors,
      clientBound: median(cell.runs.map(wrkCpuPercent)) >= CLIENT_BOUND_PERCENT * settings.threads,
    };
  };
  const cellText = (scenario: ScenarioName, server: ServerName): [string, string, string] => {
    const result = summary(scenario, server);
    if (result === null) return ['n/a', 'n/a', 'n/a'];
    const marks = `${result.errors > 0 ? ' (!)' : ''}${result.clientBound ? ' (c)' : ''}`;
    return [`${Math.round(result.rps).toLocaleString('en-US')}${marks}`, formatMs(result.p99Ms), `${result.cpuMicros.toFixed(1)} us`];
  };

  const ratio = (numerator: [ScenarioName, ServerName], denominator: [ScenarioName, ServerName]): number | null => {
    const top = summary(...numerator);
    const bottom = summary(...denominator);
    return top === null || bottom === null || bottom.rps === 0 ? null : top.rps / bottom.rps;
  };
  const efficiency = (reference: [ScenarioName, ServerName], candidate: [ScenarioName, ServerName]): number | null => {
    const top = summary(...reference);
    const bottom = summary(...candidate);
    return top === null || bottom === null || bottom.cpuMicros === 0 ? null : top.cpuMicros / bottom.cpuMicros;
  };
  const ratios = [
    { name: 'static: miwidothttp / node:http cluster', value: ratio(['static', 'miwidothttp'], ['static', 'node']), goal: 0.85 },
    { name: 'static: nginx / node:http cluster', value: ratio(['static', 'nginx'], ['static', 'node']), goal: null },
    { name: 'proxy: miwidothttp / nginx', value: ratio(['proxy', 'miwidothttp'], ['proxy', 'nginx']), goal: 0.5 },
    { name: 'proxy: miwidothttp / node:http cluster', value: ratio(['proxy', 'miwidothttp'], ['proxy', 'node']), goal: null },
    {
      name: 'static: + rate limiting / miwidothttp',
      value: ratio(['static', 'miwidothttp-ratelimit'], ['static', 'miwidothttp']),
      goal: null,
    },
    {
      name: 'static: IDS on / off (stages on, 1 worker)',
      value: ratio(['static', 'pipeline-ids'], ['static', 'pipeline-full']),
      goal: 0.9,
    },
    { name: 'proxy: IDS on / off (stages on, 1 worker)', value: ratio(['proxy', 'pipeline-ids'], ['proxy', 'pipeline-full']), goal: 0.9 },
    {
      name: 'static: hardening stages on / off (1 worker)',
      value: ratio(['static', 'pipeline-full'], ['static', 'pipeline-off']),
      goal: 0.9,
    },
    { name: 'proxy: hardening stages on / off (1 worker)', value: ratio(['proxy', 'pipeline-full'], ['proxy', 'pipeline-off']), goal: 0.9 },
    // The same comparisons by CPU cost (reference's CPU per request / miwidothttp's):
    // what req/s would show if the server had the cores to itself.
    {
      name: 'static by CPU/req: node:http cluster / miwidothttp',
      value: efficiency(['static', 'node'], ['static', 'miwidothttp']),
      goal: null,
    },
    { name: 'proxy by CPU/req: nginx / miwidothttp', value: efficiency(['proxy', 'nginx'], ['proxy', 'miwidothttp']), goal: null },
    { name: 'TLS handshakes: miwidothttp / nginx', value: ratio(['tls-handshake', 'miwidothttp'], ['tls-handshake', 'nginx']), goal: 0.8 },
    {
      name: 'TLS handshakes: miwidothttp / node:https cluster',
      value: ratio(['tls-handshake', 'miwidothttp'], ['tls-handshake', 'node']),
      goal: null,
    },
    { name: 'TLS handshakes: node:https cluster / nginx', value: ratio(['tls-handshake', 'node'], ['tls-handshake', 'nginx']), goal: null },
    {
      name: 'TLS handshakes by CPU/req: nginx / miwidothttp',
      value: efficiency(['tls-handshake', 'nginx'], ['tls-handshake', 'miwidothttp']),
      goal: null,
    },
    {
      name: 'HTTPS keep-alive: miwidothttp / nginx',
      value: ratio(['https-keepalive', 'miwidothttp'], ['https-keepalive', 'nginx']),
      goal: null,
    },
    {
      name: 'HTTPS keep-alive: miwidothttp / node:https cluster',
      value: ratio(['https-keepalive', 'miwidothttp'], ['https-keepalive', 'node']),
      goal: null,
    },
  ];
  const ratioText = (value: number | null, goal: number | null): string =>
    value === null ? 'n/a' : `${value.toFixed(2)}${goal === null ? '' : ` (goal >= ${goal}: ${value >= goal ? 'met' : 'NOT met'})`}`;

  const setup =
    `${os.cpus().length} CPU (${os.cpus()[0]?.model.trim() ?? 'unknown'}), Node ${process.version}, ${context.nginx ?? 'no nginx'}, ${context.wrk}; ` +
    `${settings.workers} workers each; wrk -t${settings.threads} -c${settings.connections}, ` +
    `median of ${settings.rounds} interleaved ${settings.durationSeconds} s runs; upstream: ${context.upstreamKind}`;

  const allRuns = [...cells.values()].flatMap((cell) => cell.runs);
  const noisyRuns = allRuns.filter((run) => foreignCpuPercent(run) >= FOREIGN_LOAD_WARN_PERCENT).length;

  const rows: string[][] = [];
  for (const scenario of SCENARIOS) {
    for (const server of scenarioServers(scenario, servers))
      rows.push([SCENARIO_LABEL[scenario], serverLabel(scenario, server), ...cellText(scenario, server)]);
  }
  const tlsLines =
    context.tls === null
      ? ['HTTPS: not measured (no certificate)']
      : [
          `HTTPS: one certificate for all, ${context.tls.certificate}; TLSv1.2 and TLSv1.3 on every server; client wrk (no ALPN, HTTP/1.1).`,
          ...Object.entries(context.tls.negotiated).map(
            ([server, result]) =>
              `  ${serverLabel('https-keepalive', server as ServerName)}: ${describeNegotiated(result)}; sessions: ${TLS_SESSIONS[server as ServerName] ?? 'n/a'}`,
          ),
          `TLS handshakes: one request per connection (Connection: close); wrk offers no session (bench/wrk-full-handshake.c): ` +
            `resumed ${describeHandshakes(context.tls.resumptionCheck?.shimmed)} in the check (wrk alone: ${describeHandshakes(context.tls.resumptionCheck?.plain)}), so req/s = full handshakes/s.`,
        ];
  const header = ['scenario', 'server', 'req/s', 'p99', 'server CPU/req'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] as string).length)));
  const line = (row: readonly string[]): string =>
    row
      .map((value, column) => (column >= 2 ? value.padStart(widths[column] as number) : value.padEnd(widths[column] as number)))
      .join('  ');
  const text = [
    setup,
    '',
    line(header),
    line(widths.map((width) => '-'.repeat(width))),
    ...rows.map(line),
    '',
    ...ratios.map((entry) => `${entry.name.padEnd(52)} ${ratioText(entry.value, entry.goal)}`),
    '',
    'server CPU/req: CPU time of the server (master + workers) per request, from /proc, in microseconds.',
    ...tlsLines,
    ...(rows.some((row) => (row[2] as string).includes('(!)'))
      ? ['', '(!) some requests failed (non-2xx or socket errors); see the per-round lines above']
      : []),
    ...(rows.some((row) => (row[2] as string).includes('(c)'))
      ? [
          '',
          `(c) wrk used >= ${CLIENT_BOUND_PERCENT}% of each of its threads' CPU (median): the client, not the server, set this number, and a ratio against it`,
          '    understates the gap; server CPU/req (and the "by CPU/req" ratios) is the comparison that holds.',
        ]
      : []),
    ...(noisyRuns > 0
      ? [
          '',
          `WARNING: in ${noisyRuns} of ${allRuns.length} runs other processes used >= ${FOREIGN_LOAD_WARN_PERCENT}% CPU ("other" above): those numbers are noisy; rerun on a quiet machine.`,
        ]
      : []),
  ].join('\n');

  const markdown = [
    '| scenario | server | req/s (median) | p99 (median) | server CPU per request (median) |',
    '|---|---|---:|---:|---:|',
    ...rows.map((row) => `| ${row.join(' | ')} |`),
    '',
    '| ratio | value |',
    '|---|---:|',
    ...ratios.map((entry) => `| ${entry.name} | ${ratioText(entry.value, entry.goal)} |`),
    '',
    `<sub>${setup}</sub>`,
    '',
    ...tlsLines.map((entry) => `<sub>${entry.trim()}</sub>`),
  ].join('\n');

  const json = {
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model.trim() ?? null,
      kernel: os.release(),
      node: process.version,
      nginx: context.nginx,
      wrk: context.wrk,
    },
    settings: { ...settings, file: `/${FILE_NAME}`, fileBytes: FILE_BYTES, contentType: CONTENT_TYPE, upstream: context.upstreamKind },
    failures: context.failures,
    noisyRuns,
    tls: context.tls === null ? null : { ...context.tls, sessions: TLS_SESSIONS },
    results: Object.fromEntries(
      SCENARIOS.map((scenario) => [
        scenario,
        Object.fromEntries(
          scenarioServers(scenario, servers).map((server) => {
            const cell = cells.get(`${scenario}/${server}`) as Cell;
            const result = summary(scenario, server);
            return [
              server,
              {
                skipped: cell.skipped ?? null,
                medianRequestsPerSecond: result === null ? null : Math.round(result.rps),
                medianP99Ms: result?.p99Ms ?? null,
                medianServerCpuMicrosPerRequest: result === null ? null : Number(result.cpuMicros.toFixed(2)),
                failedRequests: result?.errors ?? null,
                runs: cell.runs,
              },
            ];
          }),
        ),
      ]),
    ),
    ratios: Object.fromEntries(
      ratios.map((entry) => [entry.name, { value: entry.value === null ? null : Number(entry.value.toFixed(3)), goal: entry.goal }]),
    ),
  };
  return { text, markdown, json };
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
