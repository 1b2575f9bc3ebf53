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
 * With --instructions each build runs under valgrind's callgrind instead,
 * and the worker's instructions per request are counted (2 rounds, 8000
 * requests over 10 connections unless given): about the same count every
 * run of a build, for changes too small to tell apart in CPU time on a
 * machine that is not quiet.
 * User space only: the kernel's share of a request is not in it.
 *
 *   node dist/bench/ab.js --a DIST_A --b DIST_B --config FILE --url http://static.test:PORT/1k.html
 *       [--rounds 6] [--requests 100000] [--connections 50] [--pipeline full|routing-only]
 *       [--h2 --streams 10]   (an https:// URL; the config needs https_port and [ssl.domains])
 *       [--server-cpus 1 --client-cpus 0]   (taskset: the worker on one core, h2load on the other)
 *       [--instructions]   (callgrind: instructions per request; needs Debian's valgrind)
 *
 * The URL's host is the Host header; the connections go to 127.0.0.1.
 *
 * DIST_A and DIST_B are dist directories (each with bench/pipeline-server.js)
 * placed inside the repository, so that node_modules resolves.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type CpuPerRequestOptions, measureCpuPerRequest, measureInstructionsPerRequest, median } from './cpu-per-request.js';

const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    config: { type: 'string' },
    url: { type: 'string' },
    rounds: { type: 'string' },
    requests: { type: 'string' },
    connections: { type: 'string' },
    pipeline: { type: 'string', default: 'full' },
    h2: { type: 'boolean', default: false },
    streams: { type: 'string', default: '10' },
    'server-cpus': { type: 'string' },
    'client-cpus': { type: 'string' },
    instructions: { type: 'boolean', default: false },
  },
});
const countInstructions = values.instructions === true;
const rounds = Number(values.rounds ?? (countInstructions ? 2 : 6));
const requests = Number(values.requests ?? (countInstructions ? 8_000 : 100_000));
// Under callgrind the worker is some fifty times slower: with fewer connections it reads about as many
// requests per wake-up from turn to turn, which is what moves the count.
const connections = Number(values.connections ?? (countInstructions ? 10 : 50));
/** What one turn measured: CPU µs per request, or instructions per request. */
interface Turn {
  readonly perRequest: number;
  readonly rps: number;
}
if (values.a === undefined || values.b === undefined || values.config === undefined || values.url === undefined) {
  process.stderr.write('usage: ab.js --a DIST --b DIST --config FILE --url URL [--rounds N] [--requests N] [--connections N]\n');
  process.exit(2);
}

async function once(dist: string): Promise<Turn> {
  const command = [
    process.execPath,
    path.join(dist, 'bench', 'pipeline-server.js'),
    '--config',
    values.config!,
    '--pipeline',
    values.pipeline!,
    '--workers',
    '1',
  ];
  const dumps = countInstructions ? mkdtempSync(path.join(tmpdir(), 'miwidothttp-ab-')) : null;
  const counted =
    dumps === null
      ? command
      : [
          'valgrind',
          '--quiet',
          '--tool=callgrind',
          '--trace-children=yes',
          '--separate-threads=yes',
          `--callgrind-out-file=${dumps}/callgrind.%p`,
          ...command,
        ];
  // taskset execs the server (valgrind runs it in its own process): the pid is the server's.
  const pinned = values['server-cpus'] === undefined ? counted : ['taskset', '-c', values['server-cpus'], ...counted];
  const server = spawn(pinned[0]!, pinned.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  const options: CpuPerRequestOptions = {
    pid: server.pid!,
    url: values.url!,
    requests,
    connections,
    h2Streams: values.h2 ? Number(values.streams) : null,
    clientCpus: values['client-cpus'] ?? null,
  };
  try {
    if (dumps !== null) return { perRequest: await measureInstructionsPerRequest(options, dumps), rps: 0 };
    const { cpuMicros, rps } = await measureCpuPerRequest(options);
    return { perRequest: cpuMicros, rps };
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
    if (dumps !== null) rmSync(dumps, { recursive: true, force: true });
  }
}

const unit = countInstructions ? 'instructions/req' : 'us/req';
const show = (turn: Turn): string =>
  countInstructions ? `${Math.round(turn.perRequest)} ${unit}` : `${turn.perRequest.toFixed(2)} ${unit}, ${Math.round(turn.rps)} req/s`;
const results: Record<'a' | 'b', Turn[]> = { a: [], b: [] };
for (let round = 0; round < rounds; round++) {
  for (const which of round % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
    const result = await once(values[which]!);
    results[which].push(result);
    process.stdout.write(`round ${round + 1} ${which}: ${show(result)}\n`);
  }
}
const middle = (turns: readonly Turn[]): Turn => ({
  perRequest: median(turns.map((turn) => turn.perRequest)),
  rps: median(turns.map((turn) => turn.rps)),
});
const a = middle(results.a);
const b = middle(results.b);
const ratio = b.perRequest / a.perRequest;
process.stdout.write(
  `\nA ${values.a}: ${show(a)} (median)\n` +
    `B ${values.b}: ${show(b)} (median)\n` +
    `B / A by ${countInstructions ? 'instructions' : 'CPU'} per request: ${ratio.toFixed(3)} (${((ratio - 1) * 100).toFixed(1)} %)\n` +
    (countInstructions ? '' : `(load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})\n`),
);
