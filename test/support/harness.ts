/**
 * Test harness: runs the real CLI (bin/miwidothttp) as a separate process
 * tree, on real sockets, with a config written to a fresh temp directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(ROOT, 'bin/miwidothttp');

export function tempDir(prefix = 'miwidothttp-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** A port that was free a moment ago (bind :0, read, close). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Listen on 127.0.0.1, on a free port; resolves with the port. */
export async function listenLocal(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A [[vhosts]] entry that reverse-proxies `domain` to 127.0.0.1:port. */
export function proxyVhost(domain: string, port: number): string {
  return `[[vhosts]]\ndomains = ["${domain}"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "http://127.0.0.1:${port}"\n`;
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const result = spawnSync(BIN, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The same, without blocking the test's event loop (for concurrent commands). */
export function cliAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

export async function waitFor<T>(
  what: string,
  probe: () => T | null | undefined | Promise<T | null | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function request(port: number, options: http.RequestOptions & { body?: string | Buffer } = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Send raw bytes and collect everything until the server closes (or timeoutMs). */
export function rawRequest(port: number, bytes: string | Buffer, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

/**
 * Sends `bytes` from `localAddress` (another loopback address is another
 * client) and returns everything the server sent until it closed. A reset
 * ends the exchange like a close: a server that refuses without reading
 * what was sent resets the connection.
 */
export function exchange(port: number, bytes: string | Buffer, localAddress = '127.0.0.1', timeoutMs = 8000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? undefined : reject(error)));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

export function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export interface StatusJson {
  running: boolean;
  master: { pid: number; generation: number };
  workers: { pid: number; uid: number; slot: number; generation: number; state: string; restarts: number }[];
  listeners: { id: string; port: number }[];
}

/** The state letter of /proc/PID/stat ("R", "S", "Z", ...), or null when the process is gone. */
export function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

export const isRunning = (pid: number): boolean => {
  const state = processState(pid);
  return state !== null && state !== 'Z' && state !== 'X';
};

/** A miwidothttp started through `bin/miwidothttp start -c FILE`. */
/**
 * The default connection_rate_per_ip (10 new connections a second from one
 * address) would trip on a test suite that opens a connection per request
 * from 127.0.0.1; tests that do not set it get a rate no test reaches. The
 * limits' own tests set theirs.
 */
function withTestConnectionRate(body: string): string {
  if (/connection_rate_per_ip\s*=/.test(body)) return body;
  const line = 'connection_rate_per_ip = 1000000\n';
  if (body.includes('[security.timeouts]\n')) return body.replace('[security.timeouts]\n', `[security.timeouts]\n${line}`);
  return `${body}\n[security.timeouts]\n${line}`;
}

export class TestServer {
  readonly dir: string;
  readonly configFile: string;
  readonly pidFile: string;
  port = 0;
  process: ChildProcess | null = null;
  output = '';
  /** How `start` runs the CLI: by default BIN itself; a test may wrap it (a shell that enters a cgroup first) or add to its environment. */
  launch: (argv: string[]) => { file: string; args: string[]; env?: NodeJS.ProcessEnv } = (argv) => ({ file: BIN, args: argv });

  constructor() {
    this.dir = tempDir();
    // The jail: workers run as uids of their own inside it, so it must be traversable.
    chmodSync(this.dir, 0o755);
    this.configFile = path.join(this.dir, 'miwidothttp.toml');
    this.pidFile = path.join(this.dir, 'miwidothttp.pid');
  }

  /**
   * `body` is the config after the [server] table; server keys go in `server`.
   * Workers default to 2 so every test exercises more than one.
   */
  writeConfig(body: string, server = ''): void {
    const keys =
      `[server]\nbind_address = "127.0.0.1"\nhttp_port = ${this.port}\npid_file = "${this.pidFile}"\n` +
      `${/workers\s*=/.test(server) ? '' : 'workers = 2\n'}${/state_dir\s*=/.test(server) ? '' : `state_dir = "${this.stateDir}"\n`}shutdown_timeout = 5\n${server}\n`;
    // Every test server runs fully sandboxed, as in production: the jail is its directory.
    const isolation = body.includes('[process.isolation]') ? '' : `[process.isolation]\nchroot = "${this.dir}"\n`;
    writeFileSync(this.configFile, `${keys}${isolation}${withTestConnectionRate(body)}\n`);
  }

  /** Where the master keeps bans.json. */
  get stateDir(): string {
    return path.join(this.dir, 'state');
  }

  /** `logFile`: where the server logs when the config sets [server].log_file (default: its stdout). */
  async start(body: string, server = '', logFile?: string): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    this.writeConfig(body, server);
    this.output = '';
    const { file, args, env } = this.launch(['start', '-c', this.configFile]);
    this.process = spawn(file, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    this.process.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.process.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    const exited = new Promise<never>((_, reject) =>
      this.process!.once('exit', (code) => reject(new Error(`start exited with ${code}:\n${this.output}`))),
    );
    const started = (): boolean => (logFile === undefined ? this.output : readText(logFile)).includes('"miwidothttp started"');
    await Promise.race([waitFor('miwidothttp started', started, 20_000), exited]);
  }

  status(): StatusJson {
    const result = cli(['status', '-c', this.configFile, '--json']);
    return JSON.parse(result.stdout) as StatusJson;
  }

  masterPid(): number {
    return Number(readFileSync(this.pidFile, 'utf8').trim());
  }

  /** Every log line (JSON) the server has written so far. */
  logLines(): Record<string, unknown>[] {
    return this.output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  /** Stops the server and removes its directory. */
  async stop(): Promise<void> {
    await this.halt();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops the server and keeps its directory (config, state) for a restart. */
  async halt(): Promise<void> {
    const child = this.process;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      cli(['stop', '-c', this.configFile]);
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }
}
