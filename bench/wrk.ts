/** Running wrk and reading its report. */
import { execFileSync } from 'node:child_process';
import { runLoadTool } from './load-tool.js';

/** What one load run measured, whichever tool drove it (wrk, h2load). */
export interface LoadResult {
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly requests: number;
  readonly non2xx3xx: number;
  readonly socketErrors: { connect: number; read: number; write: number; timeout: number };
}

export type WrkResult = LoadResult;

export interface WrkOptions {
  readonly url: string;
  readonly host: string;
  readonly threads: number;
  readonly connections: number;
  readonly durationSeconds: number;
  /** Headers after the browser-like ones, e.g. "Connection: close". */
  readonly headers?: readonly string[];
  /** wrk's environment (default: this process's), e.g. with LD_PRELOAD. */
  readonly env?: NodeJS.ProcessEnv;
  /** Called once wrk is running, with its pid (for CPU sampling). */
  readonly onStart?: (pid: number) => void;
}

/** wrk's version line, or null when wrk is not on PATH. */
export function wrkVersion(): string | null {
  try {
    // `wrk --version` prints the banner and usage, then exits 1.
    execFileSync('wrk', ['--version'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const { stdout, code } = error as { stdout?: Buffer; code?: string };
    if (code === 'ENOENT') return null;
    return /^wrk \S+/.exec(stdout?.toString() ?? '')?.[0] ?? 'wrk';
  }
  return 'wrk';
}

const UNIT_TO_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function durationMs(text: string): number {
  const match = /^([0-9.]+)(us|ms|s|m|h)$/.exec(text);
  if (match === null) throw new Error(`wrk: unreadable duration "${text}"`);
  return Number(match[1]) * (UNIT_TO_MS[match[2] as string] as number);
}

/** Parse wrk's `--latency` report. */
export function parseWrk(output: string): WrkResult {
  const rps = /Requests\/sec:\s+([0-9.]+)/.exec(output);
  const p50 = /^\s+50%\s+(\S+)/m.exec(output);
  const p99 = /^\s+99%\s+(\S+)/m.exec(output);
  const total = /([0-9]+) requests in/.exec(output);
  if (rps === null || p50 === null || p99 === null || total === null) {
    throw new Error(`wrk: unexpected output:\n${output}`);
  }
  const non2xx = /Non-2xx or 3xx responses:\s+([0-9]+)/.exec(output);
  const socket = /Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)/.exec(output);
  return {
    requestsPerSecond: Number(rps[1]),
    p50Ms: durationMs(p50[1] as string),
    p99Ms: durationMs(p99[1] as string),
    requests: Number(total[1]),
    non2xx3xx: non2xx === null ? 0 : Number(non2xx[1]),
    socketErrors: {
      connect: Number(socket?.[1] ?? 0),
      read: Number(socket?.[2] ?? 0),
      write: Number(socket?.[3] ?? 0),
      timeout: Number(socket?.[4] ?? 0),
    },
  };
}

/**
 * What a browser sends besides Host: every server parses the same request,
 * and the IDS inspects the headers ordinary traffic carries, not a bare
 * request line.
 */
export const BROWSER_HEADERS = [
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'Accept-Language: en-US,en;q=0.9',
  'Referer: https://www.example.org/blog/2026/11/a-post.html?utm_source=feed',
];

/** What Chrome and Firefox send as Accept-Encoding over HTTP/1.1 today: the compression scenario asks as they do. */
export const BROWSER_ACCEPT_ENCODING = 'gzip, deflate, br, zstd';

/** Run wrk once; killed if it overruns its duration by 10 s. */
export function runWrk(options: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.durationSeconds}s`,
    '--latency',
    '-H',
    `Host: ${options.host}`,
    ...[...BROWSER_HEADERS, ...(options.headers ?? [])].flatMap((header) => ['-H', header]),
    options.url,
  ];
  return runLoadTool('wrk', args, {
    durationSeconds: options.durationSeconds,
    env: options.env,
    onStart: options.onStart,
    parse: parseWrk,
  });
}
