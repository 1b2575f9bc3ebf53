/**
 * CPU time per request of one running server, from /proc: h2load sends a
 * fixed number of requests over fixed connections (HTTP/1.1, or HTTP/2
 * with `streams` concurrent streams per connection) while the CPU time of
 * the server's process tree is counted. It barely moves with other load on
 * the machine, which req/s does. Used by bench/ab.ts (two builds of the
 * worker) and bench/proxy-floor.ts (the proxy against its floors).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processTree } from './procs.js';
import { BROWSER_HEADERS } from './wrk.js';

/** USER_HZ; 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS_PER_SECOND = 100;

export interface CpuPerRequestOptions {
  /** The server's root process: its tree's CPU time is counted. */
  readonly pid: number;
  /** Its host is the Host header; the connections go to 127.0.0.1 and its port. */
  readonly url: string;
  readonly requests: number;
  readonly connections: number;
  /** HTTP/2 (over TLS for an https: URL) with this many streams per connection; null: HTTP/1.1. */
  readonly h2Streams: number | null;
  /** Requests sent first, uncounted, so the JIT has settled on the hot path. */
  readonly warmup?: number;
  /** CPUs h2load is confined to (taskset -c), or null for any. */
  readonly clientCpus?: string | null;
}

export interface CpuPerRequest {
  readonly cpuMicros: number;
  readonly rps: number;
}

function cpuTicks(pid: number): number {
  let ticks = 0;
  for (const stat of processTree(pid)) ticks += stat.cpuTicks;
  return ticks;
}

/** The middle value; of an even count, the mean of the two middle ones. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function h2load(options: CpuPerRequestOptions, requests: number): string {
  const url = new URL(options.url);
  const args = [
    ...(options.h2Streams === null ? ['--h1'] : [`-m${options.h2Streams}`]),
    `-n${requests}`,
    `-c${Math.min(options.connections, requests)}`,
    `--connect-to=127.0.0.1:${url.port}`,
    ...BROWSER_HEADERS.flatMap((header) => ['-H', header]),
    options.url,
  ];
  const clientCpus = options.clientCpus ?? null;
  const result =
    clientCpus === null
      ? spawnSync('h2load', args, { encoding: 'utf8' })
      : spawnSync('taskset', ['-c', clientCpus, 'h2load', ...args], { encoding: 'utf8' });
  return result.stdout ?? '';
}

async function waitForAnswer(options: CpuPerRequestOptions, seconds: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (/ 1 succeeded/.test(h2load(options, 1))) return;
    if (attempt === seconds * 10) throw new Error(`${options.url}: no answer after ${seconds} s`);
    await sleep(100);
  }
}

/** Send the measured requests: throws unless every one was answered 2xx. */
function sendCounted(options: CpuPerRequestOptions): void {
  const out = h2load(options, options.requests);
  const done = Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
  // A proxy that answers 502 "succeeds" too: only 2xx answers are what is measured.
  const ok = Number(/status codes: (\d+) 2xx/.exec(out)?.[1] ?? 0);
  if (done !== options.requests || ok !== done) throw new Error(`${ok} of ${options.requests} requests answered 2xx:\n${out}`);
}

/** Wait until the server answers, warm it, then count: throws when a request fails. */
export async function measureCpuPerRequest(options: CpuPerRequestOptions): Promise<CpuPerRequest> {
  await waitForAnswer(options, 10);
  h2load(options, options.warmup ?? 20_000);
  const before = cpuTicks(options.pid);
  const started = performance.now();
  sendCounted(options);
  const seconds = (performance.now() - started) / 1000;
  const used = (cpuTicks(options.pid) - before) / CLOCK_TICKS_PER_SECOND;
  return { cpuMicros: (used * 1e6) / options.requests, rps: options.requests / seconds };
}

/**
 * The same requests counted in machine instructions instead of CPU time:
 * the server runs under valgrind's callgrind (the caller starts it with
 * `--trace-children=yes --separate-threads=yes
 * --callgrind-out-file=DIR/callgrind.%p`), and only its one worker's main
 * thread is read, between the warm-up and the end of the counted requests
 * (callgrind_control zeroes the counts, then dumps). V8's background
 * threads are left out: under valgrind its optimizing compiler is still
 * at work long after a warm-up, and would add as much again, from turn to
 * turn more or less.
 * The count hardly moves from run to run of the same build, whatever else
 * the machine is doing, so it tells apart changes of a per cent that CPU
 * time cannot on a busy machine. It leaves out the kernel (the sends and
 * receives, about half a request's time over HTTP/1.1) and counts
 * instructions, not their cost: a change in cache misses or in system
 * calls shows only in CPU time.
 */
export async function measureInstructionsPerRequest(options: CpuPerRequestOptions, outputDir: string): Promise<number> {
  // Under valgrind node starts some fifty times slower.
  await waitForAnswer(options, 300);
  const workers = processTree(options.pid).filter((stat) => stat.pid !== options.pid);
  if (workers.length !== 1) throw new Error(`expected one worker under ${options.pid}, found ${workers.length}`);
  const worker = workers[0]!.pid;
  h2load(options, options.warmup ?? 5_000);
  callgrindControl('--zero', worker);
  sendCounted(options);
  callgrindControl('--dump', worker);
  for (let attempt = 0; attempt < 100; attempt++) {
    // Thread 1, the first valgrind saw in the process: the main thread.
    const dump = readdirSync(outputDir).find((name) => name.startsWith(`callgrind.${worker}.`) && name.endsWith('-01'));
    const summary = dump === undefined ? null : /^summary: (\d+)$/m.exec(readFileSync(path.join(outputDir, dump), 'utf8'));
    if (summary !== null) return Number(summary[1]) / options.requests;
    await sleep(100);
  }
  throw new Error(`no callgrind dump of ${worker} in ${outputDir} after 10 s`);
}

function callgrindControl(command: '--zero' | '--dump', pid: number): void {
  const result = spawnSync('callgrind_control', [command, String(pid)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`callgrind_control ${command} ${pid}: ${result.error?.message ?? result.stderr}`);
}
