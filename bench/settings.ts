/**
 * What `npm run bench` measures with, read once from the environment, and
 * the paths and files every part of it shares.
 *
 * Environment: BENCH_ROUNDS (3), BENCH_DURATION (5 s), BENCH_WARMUP (1 s),
 * BENCH_CONNECTIONS (50: wrk's, and the fixed-rate latency clients),
 * BENCH_THREADS (1), BENCH_H2_CONNECTIONS (20) and BENCH_H2_STREAMS (10)
 * for HTTP/2, BENCH_LARGE_CONNECTIONS (4: the 100 MB file),
 * BENCH_NOISY_RETRIES (6: runs during which other processes took >= 15 %
 * CPU are repeated, this many times in all), BENCH_ONLY (a comma-separated
 * list of scenarios to run, e.g. "static,http2"; all by default),
 * BENCH_NGINX, BENCH_CADDY, BENCH_HAPROXY (their binaries; "off" leaves one
 * out), BENCH_KEEP_TMP=1 keeps the temp dirs (configs, logs, certificate).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new Error(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  }
  return Number(raw);
}

export const settings = {
  rounds: envInt('BENCH_ROUNDS', 3, 1, 20),
  durationSeconds: envInt('BENCH_DURATION', 5, 1, 60),
  warmupSeconds: envInt('BENCH_WARMUP', 1, 0, 30),
  connections: envInt('BENCH_CONNECTIONS', 50, 1, 10_000),
  threads: envInt('BENCH_THREADS', 1, 1, 64),
  /** HTTP/2: h2load's connections and concurrent streams per connection (-c, -m). */
  h2Connections: envInt('BENCH_H2_CONNECTIONS', 20, 1, 10_000),
  h2Streams: envInt('BENCH_H2_STREAMS', 10, 1, 1000),
  /** wrk's connections for the 100 MB file: each keeps a whole stream busy. */
  largeConnections: envInt('BENCH_LARGE_CONNECTIONS', 4, 1, 1000),
  /** Repeats allowed, over the whole run, of runs disturbed by foreign CPU load. */
  noisyRetries: envInt('BENCH_NOISY_RETRIES', 6, 0, 100),
  workers: 2,
};

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(REPO_ROOT, 'bin', 'miwidothttp');
export const NODE_CLUSTER = path.join(REPO_ROOT, 'dist', 'bench', 'node-cluster.js');
export const PIPELINE_SERVER = path.join(REPO_ROOT, 'dist', 'bench', 'pipeline-server.js');
export const RESULTS_FILE = path.join(REPO_ROOT, 'bench', 'results', 'latest.json');
export const FULL_HANDSHAKE_SHIM_SOURCE = path.join(REPO_ROOT, 'bench', 'wrk-full-handshake.c');

/** The 1 KiB file every small-response scenario asks for. */
export const FILE_NAME = '1k.html';
export const FILE_BYTES = 1024;
export const CONTENT_TYPE = 'text/html';
/** The 16 KiB HTML page the compression scenarios proxy (bench/html-page.ts). */
export const PAGE_NAME = 'page-16k.html';
/** The large file: streamed, never held whole in memory by a server that streams. */
export const LARGE_FILE_NAME = '100m.bin';
export const LARGE_FILE_BYTES = 100 * 1024 * 1024;

/** 1024 bytes of plain HTML, the same on every server. */
export function benchmarkFile(): Buffer {
  const head = '<!DOCTYPE html>\n<html><head><title>1 KiB</title></head><body><p>\n';
  const foot = '\n</p></body></html>\n';
  const filler = 'miwidothttp benchmark 1 KiB body. '.repeat(64).slice(0, FILE_BYTES - head.length - foot.length);
  const bytes = Buffer.from(head + filler + foot, 'latin1');
  if (bytes.length !== FILE_BYTES) throw new Error(`benchmark file is ${bytes.length} bytes`);
  return bytes;
}

/** The scenarios BENCH_ONLY selects, or null for all. */
export function onlyScenarios(): ReadonlySet<string> | null {
  const raw = process.env.BENCH_ONLY;
  if (raw === undefined || raw.trim() === '') return null;
  return new Set(raw.split(',').map((name) => name.trim()));
}
