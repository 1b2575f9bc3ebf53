/**
 * What `npm run bench` prints and writes: the medians of every cell, the
 * memory of every server, how each spread its connections over its
 * workers, and every ratio issue 16 sets a goal for, each with its goal and
 * whether this run met it. Text for the terminal, Markdown for the README
 * and docs/benchmark.md, JSON for bench/results/latest.json.
 */
import os from 'node:os';
import { SCENARIO_ORDER, SCENARIOS, type ScenarioName, type ServerName, serverLabel } from './catalogue.js';
import { busiestShare, CLIENT_BOUND_PERCENT, clientCpuPercent, cpuMicrosPerRequest, foreignCpuPercent, type RunRecord } from './measure.js';
import { PAGE_BYTES } from './html-page.js';
import type { Served } from './http-check.js';
import type { ProcessMemory } from './procs.js';
import { LARGE_FILE_BYTES, settings } from './settings.js';

/** CPU used by processes outside the benchmark above which a run is flagged as noisy. */
export const FOREIGN_LOAD_WARN_PERCENT = 15;
const MIB = 1024 * 1024;

export interface Cell {
  skipped?: string;
  /** How the server answered the check before the runs: the coding it chose (compression scenarios) and the size on the wire. */
  served?: Served;
  runs: RunRecord[];
}

/** The content coding a server chose in `scenario`, or null when it answered as stored (or was not checked). */
function codingOf(cells: ReadonlyMap<string, Cell>, scenario: ScenarioName, server: ServerName): string | null {
  return cells.get(`${scenario}/${server}`)?.served?.coding ?? null;
}

/** A server's name with the coding it chose: a ratio between br and gzip is only read right when both are named. */
function withCoding(cells: ReadonlyMap<string, Cell>, scenario: ScenarioName, server: ServerName): string {
  const coding = codingOf(cells, scenario, server);
  return `${serverLabel(scenario, server)}${coding === null ? '' : ` (${coding})`}`;
}

/** Resident memory of each server, idle: after start (before any load) and after the last run. */
export interface MemoryReport {
  readonly afterStart: Partial<Record<ServerName, ProcessMemory[]>>;
  readonly afterRun: Partial<Record<ServerName, ProcessMemory[]>>;
  /** What `miwidothttp status --json` says of the same processes (RSS in bytes), after the run. */
  readonly status: { master: number | null; workers: (number | null)[] } | null;
}

export interface Context {
  readonly tools: string;
  readonly upstreamKind: string;
  readonly failures: readonly string[];
  readonly tlsLines: readonly string[];
  readonly memory: MemoryReport;
  /** The fixed rate of the latency scenario (requests/s); null when nginx's static peak was not measured. */
  readonly latencyRate: number | null;
}

type Goal = { readonly atLeast: number } | { readonly atMost: number };
interface Ratio {
  readonly name: string;
  readonly value: number | null;
  readonly goal: Goal | null;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export function formatMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} us` : `${ms.toFixed(2)} ms`;
}

const mib = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MB`;

interface Summary {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuMicros: number;
  errors: number;
  clientBound: boolean;
  /** Largest growth of one worker's memory over the run (large file), median over runs; null when not followed. */
  memoryGrowthBytes: number | null;
  /** The busiest worker's share of connections: median and worst over runs; null with one worker. */
  spread: { median: number; worst: number } | null;
}

function summarize(cells: ReadonlyMap<string, Cell>, scenario: ScenarioName, server: ServerName): Summary | null {
  const cell = cells.get(`${scenario}/${server}`);
  if (cell === undefined || cell.runs.length === 0) return null;
  const runs = cell.runs;
  const errors = runs.reduce((sum, run) => sum + run.load.non2xx3xx + Object.values(run.load.socketErrors).reduce((a, b) => a + b, 0), 0);
  const growth = runs
    .filter((run) => run.memory !== null)
    .map((run) => Math.max(0, ...Object.entries(run.memory!.peak).map(([pid, peak]) => peak - (run.memory!.before[Number(pid)] ?? peak))));
  const shares = runs.map(busiestShare).filter((share): share is number => share !== null);
  return {
    rps: median(runs.map((run) => run.load.requestsPerSecond)),
    p50Ms: median(runs.map((run) => run.load.p50Ms)),
    p99Ms: median(runs.map((run) => run.load.p99Ms)),
    cpuMicros: median(runs.map((run) => cpuMicrosPerRequest(run, server))),
    errors,
    clientBound: median(runs.map(clientCpuPercent)) >= CLIENT_BOUND_PERCENT * settings.threads,
    memoryGrowthBytes: growth.length === 0 ? null : median(growth),
    spread: shares.length === 0 ? null : { median: median(shares), worst: Math.max(...shares) },
  };
}

/** The ratios issue 16 names, each with its goal, and the ones that put them in context. */
function ratios(cells: ReadonlyMap<string, Cell>, memory: MemoryReport): Ratio[] {
  const s = (scenario: ScenarioName, server: ServerName) => summarize(cells, scenario, server);
  const rps = (a: [ScenarioName, ServerName], b: [ScenarioName, ServerName]): number | null => {
    const top = s(...a);
    const bottom = s(...b);
    return top === null || bottom === null || bottom.rps === 0 ? null : top.rps / bottom.rps;
  };
  /** Reference CPU per request over the candidate's: what req/s would show with the cores to itself. */
  const cpu = (reference: [ScenarioName, ServerName], candidate: [ScenarioName, ServerName]): number | null => {
    const top = s(...reference);
    const bottom = s(...candidate);
    return top === null || bottom === null || bottom.cpuMicros === 0 ? null : top.cpuMicros / bottom.cpuMicros;
  };
  const p99 = (a: ServerName, b: ServerName): number | null => {
    const top = s('latency', a);
    const bottom = s('latency', b);
    return top === null || bottom === null || bottom.p99Ms === 0 ? null : top.p99Ms / bottom.p99Ms;
  };
  const worstShare = (['static', 'proxy'] as const)
    .map((scenario) => s(scenario, 'miwidothttp')?.spread?.worst ?? null)
    .filter((share): share is number => share !== null);
  const idle = memory.afterStart.miwidothttp ?? [];
  const workers = idle.filter((entry) => entry.role === 'child').map((entry) => entry.rssBytes);
  const master = idle.find((entry) => entry.role === 'root')?.rssBytes ?? null;
  const large = s('large-file', 'miwidothttp');
  const compressed = (server: ServerName): string => withCoding(cells, 'proxy-compressed', server);
  const on = s('proxy-compressed', 'miwidothttp');
  const off = s('proxy-identity', 'miwidothttp');
  const ownCoding = codingOf(cells, 'proxy-compressed', 'miwidothttp');
  const own = `miwidothttp${ownCoding === null ? '' : `, ${ownCoding}`}`;
  return [
    { name: 'static: miwidothttp / node:http cluster', value: rps(['static', 'miwidothttp'], ['static', 'node']), goal: { atLeast: 1.0 } },
    { name: 'static: miwidothttp / nginx', value: rps(['static', 'miwidothttp'], ['static', 'nginx']), goal: { atLeast: 0.8 } },
    { name: 'static: Caddy / miwidothttp', value: rps(['static', 'caddy'], ['static', 'miwidothttp']), goal: null },
    { name: 'proxy: miwidothttp / nginx', value: rps(['proxy', 'miwidothttp'], ['proxy', 'nginx']), goal: { atLeast: 0.65 } },
    { name: 'proxy: miwidothttp / HAProxy', value: rps(['proxy', 'miwidothttp'], ['proxy', 'haproxy']), goal: null },
    { name: 'proxy: Caddy / miwidothttp', value: rps(['proxy', 'caddy'], ['proxy', 'miwidothttp']), goal: null },
    { name: 'proxy: miwidothttp / node:http cluster', value: rps(['proxy', 'miwidothttp'], ['proxy', 'node']), goal: null },
    {
      name: `proxy 16 KiB compressed: ${compressed('miwidothttp')} / ${compressed('nginx')}`,
      value: rps(['proxy-compressed', 'miwidothttp'], ['proxy-compressed', 'nginx']),
      goal: null,
    },
    {
      name: `proxy 16 KiB compressed: ${compressed('caddy')} / ${compressed('miwidothttp')}`,
      value: rps(['proxy-compressed', 'caddy'], ['proxy-compressed', 'miwidothttp']),
      goal: null,
    },
    {
      name: `proxy 16 KiB compressed by CPU/req: ${compressed('nginx')} / ${compressed('miwidothttp')}`,
      value: cpu(['proxy-compressed', 'nginx'], ['proxy-compressed', 'miwidothttp']),
      goal: null,
    },
    {
      name: `proxy 16 KiB: compression on / off (${own})`,
      value: rps(['proxy-compressed', 'miwidothttp'], ['proxy-identity', 'miwidothttp']),
      goal: null,
    },
    {
      name: `proxy 16 KiB: server CPU/req added by compression (${own}), us`,
      value: on === null || off === null ? null : on.cpuMicros - off.cpuMicros,
      goal: null,
    },
    { name: 'HTTP/2: miwidothttp / nginx', value: rps(['http2', 'miwidothttp'], ['http2', 'nginx']), goal: { atLeast: 0.6 } },
    { name: 'HTTP/2: miwidothttp / node:http2 cluster', value: rps(['http2', 'miwidothttp'], ['http2', 'node']), goal: { atLeast: 0.8 } },
    { name: 'HTTP/2: Caddy / miwidothttp', value: rps(['http2', 'caddy'], ['http2', 'miwidothttp']), goal: null },
    {
      name: 'HTTPS keep-alive: miwidothttp / nginx',
      value: rps(['https-keepalive', 'miwidothttp'], ['https-keepalive', 'nginx']),
      goal: { atLeast: 0.7 },
    },
    {
      name: 'HTTPS keep-alive: miwidothttp / node:https cluster',
      value: rps(['https-keepalive', 'miwidothttp'], ['https-keepalive', 'node']),
      goal: null,
    },
    {
      name: 'TLS handshakes by CPU each: node:https cluster / miwidothttp',
      value: cpu(['tls-handshake', 'node'], ['tls-handshake', 'miwidothttp']),
      goal: { atLeast: 1.0 },
    },
    { name: 'TLS handshakes: miwidothttp / nginx', value: rps(['tls-handshake', 'miwidothttp'], ['tls-handshake', 'nginx']), goal: null },
    {
      name: 'TLS handshakes by CPU each: nginx / miwidothttp',
      value: cpu(['tls-handshake', 'nginx'], ['tls-handshake', 'miwidothttp']),
      goal: null,
    },
    { name: 'latency: p99 miwidothttp / nginx at half nginx peak', value: p99('miwidothttp', 'nginx'), goal: { atMost: 2.0 } },
    {
      name: 'spread: busiest worker share, worst run (wrk -c50)',
      value: worstShare.length === 0 ? null : Math.max(...worstShare),
      goal: { atMost: 0.6 },
    },
    { name: 'idle worker RSS, MB (largest)', value: workers.length === 0 ? null : Math.max(...workers) / MIB, goal: { atMost: 60 } },
    { name: 'idle master RSS, MB', value: master === null ? null : master / MIB, goal: { atMost: 80 } },
    { name: '100 MB file: miwidothttp / nginx', value: rps(['large-file', 'miwidothttp'], ['large-file', 'nginx']), goal: null },
    {
      name: '100 MB file: worker memory growth, MB',
      value: large?.memoryGrowthBytes == null ? null : large.memoryGrowthBytes / MIB,
      goal: { atMost: 32 },
    },
    {
      name: 'static: hardening stages on / off (1 worker)',
      value: rps(['static', 'pipeline-full'], ['static', 'pipeline-off']),
      goal: { atLeast: 0.9 },
    },
    {
      name: 'proxy: hardening stages on / off (1 worker)',
      value: rps(['proxy', 'pipeline-full'], ['proxy', 'pipeline-off']),
      goal: { atLeast: 0.9 },
    },
    {
      name: 'static: IDS on / off (stages on, 1 worker)',
      value: rps(['static', 'pipeline-ids'], ['static', 'pipeline-full']),
      goal: { atLeast: 0.9 },
    },
    {
      name: 'proxy: IDS on / off (stages on, 1 worker)',
      value: rps(['proxy', 'pipeline-ids'], ['proxy', 'pipeline-full']),
      goal: { atLeast: 0.9 },
    },
    {
      name: 'static: rate limiting on / off',
      value: rps(['static', 'miwidothttp-ratelimit'], ['static', 'miwidothttp']),
      goal: { atLeast: 0.9 },
    },
    {
      name: 'proxy: rate limiting on / off',
      value: rps(['proxy', 'miwidothttp-ratelimit'], ['proxy', 'miwidothttp']),
      goal: { atLeast: 0.9 },
    },
    { name: 'static by CPU/req: node:http cluster / miwidothttp', value: cpu(['static', 'node'], ['static', 'miwidothttp']), goal: null },
    { name: 'proxy by CPU/req: nginx / miwidothttp', value: cpu(['proxy', 'nginx'], ['proxy', 'miwidothttp']), goal: null },
  ];
}

function ratioText(ratio: Ratio): string {
  if (ratio.value === null) return 'n/a';
  const value = ratio.value >= 10 ? ratio.value.toFixed(1) : ratio.value.toFixed(2);
  if (ratio.goal === null) return value;
  const [sign, target, met] =
    'atLeast' in ratio.goal
      ? ['>=', ratio.goal.atLeast, ratio.value >= ratio.goal.atLeast]
      : ['<=', ratio.goal.atMost, ratio.value <= ratio.goal.atMost];
  return `${value} (goal ${sign} ${target}: ${met ? 'met' : 'NOT met'})`;
}

function memoryLine(entries: readonly ProcessMemory[] | undefined): [string, string] {
  if (entries === undefined || entries.length === 0) return ['n/a', 'n/a'];
  const root = entries.find((entry) => entry.role === 'root');
  const children = entries.filter((entry) => entry.role === 'child').map((entry) => mib(entry.rssBytes));
  return [root === undefined ? 'n/a' : mib(root.rssBytes), children.length === 0 ? '-' : children.join(', ')];
}

function table(header: readonly string[], rows: readonly (readonly string[])[], rightFrom: number): string[] {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (row: readonly string[]): string =>
    row.map((value, column) => (column >= rightFrom ? value.padStart(widths[column]!) : value.padEnd(widths[column]!))).join('  ');
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)];
}

const markdownTable = (header: readonly string[], rows: readonly (readonly string[])[], rightFrom: number): string[] => [
  `| ${header.join(' | ')} |`,
  `|${header.map((_, column) => (column >= rightFrom ? '---:' : '---')).join('|')}|`,
  ...rows.map((row) => `| ${row.join(' | ')} |`),
];

export function buildReport(
  cells: ReadonlyMap<string, Cell>,
  servers: readonly ServerName[],
  context: Context,
): { text: string; markdown: string; json: unknown } {
  const loadRows: string[][] = [];
  for (const scenario of SCENARIO_ORDER) {
    for (const server of SCENARIOS[scenario].servers) {
      if (!servers.includes(server) || !cells.has(`${scenario}/${server}`)) continue;
      const result = summarize(cells, scenario, server);
      const label =
        scenario === 'latency' && context.latencyRate !== null
          ? `latency at ${Math.round(context.latencyRate).toLocaleString('en-US')}/s`
          : SCENARIOS[scenario].label;
      if (result === null) {
        loadRows.push([label, serverLabel(scenario, server), 'n/a', 'n/a', 'n/a', 'n/a']);
        continue;
      }
      const marks = `${result.errors > 0 ? ' (!)' : ''}${result.clientBound ? ' (c)' : ''}`;
      const rate =
        scenario === 'large-file'
          ? `${((result.rps * LARGE_FILE_BYTES) / MIB).toFixed(0)} MB/s`
          : Math.round(result.rps).toLocaleString('en-US');
      loadRows.push([
        label,
        withCoding(cells, scenario, server),
        `${rate}${marks}`,
        formatMs(result.p50Ms),
        formatMs(result.p99Ms),
        `${result.cpuMicros.toFixed(scenario === 'large-file' ? 0 : 1)} us`,
      ]);
    }
  }
  const loadHeader = ['scenario', 'server', 'req/s', 'p50', 'p99', 'server CPU/req'];

  const memoryRows = servers.map((server) => [
    serverLabel(null, server),
    ...memoryLine(context.memory.afterStart[server]),
    ...memoryLine(context.memory.afterRun[server]),
  ]);
  const memoryHeader = ['server', 'master/main RSS, idle', 'workers, idle', 'master after the run', 'workers after the run'];

  const spreadRows: string[][] = [];
  for (const scenario of ['static', 'proxy', 'http2'] as const)
    for (const server of servers) {
      const spread = summarize(cells, scenario, server)?.spread;
      if (spread)
        spreadRows.push([SCENARIOS[scenario].label, serverLabel(scenario, server), spread.median.toFixed(2), spread.worst.toFixed(2)]);
    }
  const spreadHeader = ['scenario', 'server', 'busiest worker share (median)', 'worst run'];

  const ratioList = ratios(cells, context.memory);
  const setup =
    `${os.cpus().length} CPU (${os.cpus()[0]?.model.trim() ?? 'unknown'}), Node ${process.version}, ${context.tools}; ` +
    `${settings.workers} workers (or threads) each; wrk -t${settings.threads} -c${settings.connections}; ` +
    `h2load -c${settings.h2Connections} -m${settings.h2Streams}; 100 MB file with ${settings.largeConnections} connections; ` +
    `median of ${settings.rounds} interleaved ${settings.durationSeconds} s runs; upstream: ${context.upstreamKind}`;
  const allRuns = [...cells.values()].flatMap((cell) => cell.runs);
  const noisyRuns = allRuns.filter((run) => foreignCpuPercent(run) >= FOREIGN_LOAD_WARN_PERCENT).length;
  const statusLine =
    context.memory.status === null
      ? []
      : [
          `miwidothttp status --json after the run: master ${context.memory.status.master === null ? 'n/a' : mib(context.memory.status.master)}, ` +
            `workers ${context.memory.status.workers.map((rss) => (rss === null ? 'n/a' : mib(rss))).join(', ')}`,
        ];
  const codings = SCENARIOS['proxy-compressed'].servers
    .map((server) => [server, cells.get(`proxy-compressed/${server}`)?.served] as const)
    .filter((entry): entry is readonly [ServerName, Served] => entry[1] !== undefined)
    .map(
      ([server, served]) => `${serverLabel(null, server)} ${served.coding ?? 'none'} (${served.wireBytes.toLocaleString('en-US')} bytes)`,
    );
  const notes = [
    'server CPU/req: CPU time of the server (master + workers) per request, from /proc, in microseconds.',
    ...(codings.length === 0
      ? []
      : [
          `proxy 16 KiB, compressed: a ${PAGE_BYTES.toLocaleString('en-US')}-byte HTML page asked for with Accept-Encoding: ` +
            `${SCENARIOS['proxy-compressed'].acceptEncoding}; each proxy compressed it on the fly as: ${codings.join(', ')}.`,
        ]),
    'latency: h2load --h1 at a fixed rate, half the median nginx reached on static 1 KiB, over the same connections as wrk.',
    ...context.tlsLines,
    ...(loadRows.some((row) => row[2]!.includes('(!)'))
      ? ['(!) some requests failed (non-2xx or socket errors); see the per-round lines above']
      : []),
    ...(loadRows.some((row) => row[2]!.includes('(c)'))
      ? [
          `(c) the client used >= ${CLIENT_BOUND_PERCENT}% of each of its threads' CPU (median): the client, not the server, set this number;`,
          '    server CPU/req (and the "by CPU" ratios) is the comparison that holds.',
        ]
      : []),
    ...(noisyRuns > 0
      ? [
          `WARNING: in ${noisyRuns} of ${allRuns.length} runs other processes used >= ${FOREIGN_LOAD_WARN_PERCENT}% CPU: those numbers are noisy; rerun on a quiet machine.`,
        ]
      : []),
  ];

  const text = [
    setup,
    '',
    ...table(loadHeader, loadRows, 2),
    '',
    ...table(memoryHeader, memoryRows, 1),
    ...statusLine,
    '',
    ...table(spreadHeader, spreadRows, 2),
    '',
    ...ratioList.map((ratio) => `${ratio.name.padEnd(60)} ${ratioText(ratio)}`),
    '',
    ...notes,
  ].join('\n');
  const markdown = [
    ...markdownTable(loadHeader, loadRows, 2),
    '',
    ...markdownTable(memoryHeader, memoryRows, 1),
    '',
    ...markdownTable(spreadHeader, spreadRows, 2),
    '',
    ...markdownTable(
      ['ratio', 'value'],
      ratioList.map((ratio) => [ratio.name, ratioText(ratio)]),
      1,
    ),
    '',
    `<sub>${setup}</sub>`,
    ...statusLine.map((line) => `<sub>${line}</sub>`),
    ...notes.map((line) => `<sub>${line.trim()}</sub>`),
  ].join('\n');

  const json = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim() ?? null, kernel: os.release(), node: process.version },
    tools: context.tools,
    settings: { ...settings, upstream: context.upstreamKind, latencyRate: context.latencyRate },
    failures: context.failures,
    noisyRuns,
    memory: context.memory,
    results: Object.fromEntries(
      SCENARIO_ORDER.map((scenario) => [
        scenario,
        Object.fromEntries(
          SCENARIOS[scenario].servers
            .filter((server) => cells.has(`${scenario}/${server}`))
            .map((server) => {
              const cell = cells.get(`${scenario}/${server}`)!;
              return [server, { skipped: cell.skipped ?? null, summary: summarize(cells, scenario, server), runs: cell.runs }];
            }),
        ),
      ]),
    ),
    ratios: Object.fromEntries(
      ratioList.map((ratio) => [ratio.name, { value: ratio.value === null ? null : Number(ratio.value.toFixed(3)), goal: ratio.goal }]),
    ),
  };
  return { text, markdown, json };
}
