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
 *       [--server-cpus 1 --client-cpus 0]   (taskset: the worker on one core, h2load on the other)
 *
 * The URL's host is the Host header; the connections go to 127.0.0.1.
 *
 * DIST_A and DIST_B are dist directories (each with bench/pipeline-server.js)
 * placed inside the repository, so that node_modules resolves.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type CpuPerRequest, measureCpuPerRequest, median } from './cpu-per-request.js';

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
    'server-cpus': { type: 'string' },
    'client-cpus': { type: 'string' },
  },
});
if (values.a === undefined || values.b === undefined || values.config === undefined || values.url === undefined) {
  process.stderr.write('usage: ab.js --a DIST --b DIST --config FILE --url URL [--rounds N] [--requests N] [--connections N]\n');
  process.exit(2);
}

async function once(dist: string): Promise<CpuPerRequest> {
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
  // taskset execs the server: the pid is the server's.
  const pinned = values['server-cpus'] === undefined ? command : ['taskset', '-c', values['server-cpus'], ...command];
  const server = spawn(pinned[0]!, pinned.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    return await measureCpuPerRequest({
      pid: server.pid!,
      url: values.url!,
      requests: Number(values.requests),
      connections: Number(values.connections),
      h2Streams: values.h2 ? Number(values.streams) : null,
      clientCpus: values['client-cpus'] ?? null,
    });
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
}

const results: Record<'a' | 'b', CpuPerRequest[]> = { a: [], b: [] };
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
