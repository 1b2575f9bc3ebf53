/**
 * A/B of two builds of the worker code, by CPU time per request: what a
 * change to a hot path buys, measured in one run (docs/benchmark.md lists
 * the results). Each build's bench/pipeline-server.js serves the same
 * config with one worker; the builds take turns, round after round, and
 * each turn sends the same number of requests with h2load (HTTP/1.1, a
 * fixed count over fixed connections; with --h2, HTTP/2 over TLS with
 * --streams concurrent streams per connection) while /proc counts the
 * worker's CPU time. CPU per request barely moves with other load on the machine,
 * which req/s does.
 *
 *   node dist/bench/ab.js --a DIST_A --b DIST_B --config FILE --url http://static.test:PORT/1k.html
 *       [--rounds 6] [--requests 100000] [--connections 50] [--pipeline full|routing-only]
 *       [--h2 --streams 10]   (an https:// URL; the config needs https_port and [ssl.domains])
 *
 * The URL's host is the Host header; the connections go to 127.0.0.1.
 *
 * DIST_A and DIST_B are dist directories (each with bench/pipeline-server.js)
 * placed inside the repository, so that node_modules resolves.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { processTree } from './procs.js';
import { BROWSER_HEADERS } from './wrk.js';

const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    config: { type: 'string' },
    url: { type: 'string' },
    rounds: { type: 'string', default: '6' },
    requests: { type: 'string', default: '100000' },
    connections: { type: 'string', default: '50' },
    pipeline: { type: 'string', default: 'full' },
    h2: { type: 'boolean', default: false },
    streams: { type: 'string', default: '10' },
  },
});
if (values.a === undefined || values.b === undefined || values.config === undefined || values.url === undefined) {
  process.stderr.write('usage: ab.js --a DIST --b DIST --config FILE --url URL [--rounds N] [--requests N] [--connections N]\n');
  process.exit(2);
}

const CLOCK_TICKS_PER_SECOND = 100;

function cpuTicks(pid: number): number {
  let ticks = 0;
  for (const stat of processTree(pid)) ticks += stat.cpuTicks;
  return ticks;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function once(dist: string): Promise<{ cpuMicros: number; rps: number }> {
  const server = spawn(
    process.execPath,
    [path.join(dist, 'bench', 'pipeline-server.js'), '--config', values.config!, '--pipeline', values.pipeline!, '--workers', '1'],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  try {
    const url = new URL(values.url!);
    const connectTo = `127.0.0.1:${url.port}`;
    const h2load = (requests: number): string => {
      const result = spawnSync(
        'h2load',
        [
          ...(values.h2 ? [`-m${values.streams}`] : ['--h1']),
          `-n${requests}`,
          `-c${values.connections}`,
          `--connect-to=${connectTo}`,
          ...BROWSER_HEADERS.flatMap((header) => ['-H', header]),
          values.url!,
        ],
        { encoding: 'utf8' },
      );
      return result.stdout;
    };
    // Up, then warm: the JIT settles on the hot path before the count starts.
    for (let i = 0; i < 50; i++) {
      if (/ 1 succeeded/.test(h2load(1))) break;
      await sleep(100);
    }
    h2load(20_000);
    const before = cpuTicks(server.pid!);
    const started = performance.now();
    const out = h2load(Number(values.requests));
    const seconds = (performance.now() - started) / 1000;
    const used = (cpuTicks(server.pid!) - before) / CLOCK_TICKS_PER_SECOND;
    const done = Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
    if (done !== Number(values.requests)) throw new Error(`only ${done} requests succeeded:\n${out}`);
    return { cpuMicros: (used * 1e6) / done, rps: done / seconds };
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
}

const results: Record<'a' | 'b', { cpuMicros: number; rps: number }[]> = { a: [], b: [] };
for (let round = 0; round < Number(values.rounds); round++) {
  for (const which of round % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
    const result = await once(values[which]!);
    results[which].push(result);
    process.stdout.write(`round ${round + 1} ${which}: ${result.cpuMicros.toFixed(2)} us/req, ${Math.round(result.rps)} req/s\n`);
  }
}
const a = median(results.a.map((r) => r.cpuMicros));
const b = median(results.b.map((r) => r.cpuMicros));
process.stdout.write(
  `\nA ${values.a}: ${a.toFixed(2)} us/req (median), ${Math.round(median(results.a.map((r) => r.rps)))} req/s\n` +
    `B ${values.b}: ${b.toFixed(2)} us/req (median), ${Math.round(median(results.b.map((r) => r.rps)))} req/s\n` +
    `B / A by CPU per request: ${(b / a).toFixed(3)} (${(((b - a) / a) * 100).toFixed(1)} %)\n` +
    `(load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})\n`,
);
