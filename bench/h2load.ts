/**
 * Running h2load (Debian's nghttp2-client) and reading its report: HTTP/2
 * load (many streams on few connections), and HTTP/1.1 at a fixed rate
 * (`--h1 --rps`) for latency. Percentiles come from its per-request log
 * (`--log-file`: start, status, microseconds to the end of the response),
 * since its summary prints only min, max and mean.
 */
import { execFileSync } from 'node:child_process';
import { runLoadTool } from './load-tool.js';
import { readFileSync, rmSync } from 'node:fs';
import { BROWSER_HEADERS, type LoadResult } from './wrk.js';

/** h2load's version, or null when it is not installed. */
export function h2loadVersion(): string | null {
  try {
    const out = execFileSync('h2load', ['--version'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    return /nghttp2\/\S+/.exec(out)?.[0]?.replace('nghttp2', 'h2load') ?? 'h2load';
  } catch (error) {
    return (error as { code?: string }).code === 'ENOENT' ? null : 'h2load';
  }
}

export interface H2loadOptions {
  /** https://host:port/path or http://host:port/path: the host is the :authority and SNI; the connection goes to 127.0.0.1. */
  readonly url: string;
  readonly port: number;
  readonly connections: number;
  readonly threads: number;
  readonly durationSeconds: number;
  /** Concurrent streams per connection (HTTP/2); 1 over HTTP/1.1. */
  readonly streams: number;
  /** HTTP/1.1 only (ALPN and the plain-HTTP upgrade off). */
  readonly http1: boolean;
  /** Requests per second per connection (a fixed rate); null for as fast as it goes. */
  readonly ratePerConnection: number | null;
  /** Where the per-request log goes (removed once read). */
  readonly logFile: string;
  readonly onStart?: (pid: number) => void;
}

function percentile(sorted: Float64Array, share: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)] as number;
}

/** p50 and p99 of the successful requests in h2load's log, in ms; the failed ones (status -1) counted apart. */
function latencies(logFile: string): { p50Ms: number; p99Ms: number; failed: number } {
  const text = readFileSync(logFile, 'latin1');
  const durations: number[] = [];
  let failed = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [, status, micros] = line.split('\t');
    if (status === '-1') failed += 1;
    else durations.push(Number(micros));
  }
  const sorted = Float64Array.from(durations).sort();
  return { p50Ms: percentile(sorted, 0.5) / 1000, p99Ms: percentile(sorted, 0.99) / 1000, failed };
}

/** Parse h2load's summary and its log. */
export function parseH2load(output: string, logFile: string): LoadResult {
  const finished = /finished in [0-9.]+m?s, ([0-9.]+) req\/s/.exec(output);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
    output,
  );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  if (finished === null || requests === null || codes === null) throw new Error(`h2load: unexpected output:\n${output}`);
  const { p50Ms, p99Ms } = latencies(logFile);
  return {
    requestsPerSecond: Number(finished[1]),
    p50Ms,
    p99Ms,
    requests: Number(requests[3]),
    non2xx3xx: Number(codes[3]) + Number(codes[4]),
    socketErrors: { connect: 0, read: Number(requests[6]), write: 0, timeout: Number(requests[7]) },
  };
}

/** Run h2load once; killed if it overruns its duration by 10 s. */
export function runH2load(options: H2loadOptions): Promise<LoadResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-m${options.streams}`,
    `-D${options.durationSeconds}`,
    `--connect-to=127.0.0.1:${options.port}`,
    `--log-file=${options.logFile}`,
    ...(options.http1 ? ['--h1'] : []),
    ...(options.ratePerConnection === null ? [] : [`--rps=${options.ratePerConnection}`]),
    ...BROWSER_HEADERS.flatMap((header) => ['-H', header]),
    options.url,
  ];
  rmSync(options.logFile, { force: true });
  const parse = (output: string): LoadResult => {
    try {
      return parseH2load(output, options.logFile);
    } finally {
      rmSync(options.logFile, { force: true });
    }
  };
  return runLoadTool('h2load', args, { durationSeconds: options.durationSeconds, onStart: options.onStart, parse });
}
