/**
 * `node dist/bench/ids-micro.js`: nanoseconds per call of the IDS engine on
 * benign traffic, the case that must stay cheap (the budget is at most 10 %
 * of a request's throughput, a few microseconds).
 *
 * A benchmark, not a test: it prints and never fails. Each case runs
 * BENCH_IDS_ROUNDS rounds (7) of BENCH_IDS_CALLS calls (200 000) after a
 * warm-up; the median round is reported with the fastest and slowest.
 * IDS_ENGINE measures another build; IDS_COMPARE compares one with this
 * build (see compare()).
 */
import type { IdsEngine } from '../src/worker/ids/index.js';

/** IDS_ENGINE=/path/to/index.js measures another build of the engine (an older commit's, for a before/after on the same machine load). */
const enginePath = process.env.IDS_ENGINE ?? '../src/worker/ids/index.js';
const { createIdsEngine } = (await import(enginePath)) as { createIdsEngine: (rules: []) => IdsEngine };

const ROUNDS = Number(process.env.BENCH_IDS_ROUNDS ?? 7);
const CALLS = Number(process.env.BENCH_IDS_CALLS ?? 200_000);

const CHROME_UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

const BROWSER_HEADERS = {
  host: 'www.example.com',
  'user-agent': CHROME_UA,
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'accept-language': 'en-US,en;q=0.9',
  'accept-encoding': 'gzip, deflate, br',
  connection: 'keep-alive',
};

/** A 2 KiB order, as a shop's API receives it. */
const JSON_2K = Buffer.from(
  JSON.stringify({
    order: {
      id: 'ord_7f3a9c2e41b8',
      customer: { name: "Siobhan O'Connor", email: 'siobhan.oconnor@example.ie', phone: '+353 1 555 0142' },
      shipping: { street: '12 Harbour View, Apt. 4B', city: 'Dún Laoghaire', country: 'IE', notes: 'Leave at the door; ring twice.' },
      items: Array.from({ length: 21 }, (_, i) => ({
        sku: `SKU-${1000 + i}`,
        title: ['Rock & Roll T-shirt', 'Coffee mug (12 oz)', "Kids' rain boots", 'USB-C cable, 2 m', 'Notebook A5, dotted'][i % 5],
        qty: (i % 3) + 1,
        price: Math.round((9.99 + i) * 100) / 100,
        gift: i % 4 === 0,
      })),
      coupon: '50% OFF WINTER',
      created: '2024-01-05T10:30:00Z',
    },
  }),
);

/** Distinct User-Agents (more than the engine remembers), to measure a cache miss every call. */
const FRESH_UA_HEADERS = Array.from({ length: 4096 }, (_, i) => ({
  ...BROWSER_HEADERS,
  'user-agent': CHROME_UA.replace('124.0.0.0', `124.0.${i >> 6}.${i & 63}`),
}));

const SESSION_HEADERS = {
  ...BROWSER_HEADERS,
  cookie: '_ga=GA1.2.1234567890.1700000000; sessionid=8f3c2a1b9d7e6f5a4b3c2d1e0f9a8b7c; lang=en-US',
  referer: 'https://www.example.com/collections/shoes?page=1',
};

interface Case {
  readonly name: string;
  /** Untimed, before each timed run of CALLS calls. */
  readonly prepare?: () => void;
  readonly run: (engine: IdsEngine, i: number) => number;
}

/**
 * CALLS copies of BROWSER_HEADERS whose values are new strings, as Node's
 * HTTP parser hands every request's headers over: V8 remembers a string's
 * hash in the string, so the same literal every call hides what looking a
 * value up costs in a server.
 */
let parsedHeaders: Record<string, string>[] = [];
function parseHeadersAfresh(): void {
  const raw = Object.entries(BROWSER_HEADERS).map(([name, value]) => [name, Buffer.from(value, 'latin1')] as const);
  parsedHeaders = Array.from({ length: CALLS }, () => Object.fromEntries(raw.map(([name, bytes]) => [name, bytes.toString('latin1')])));
}

const CASES: readonly Case[] = [
  { name: 'GET /index.html, browser headers', run: (engine) => engine.inspectRequest('/index.html', BROWSER_HEADERS).length },
  {
    name: 'GET /index.html, browser headers, parsed afresh',
    prepare: parseHeadersAfresh,
    run: (engine, i) => engine.inspectRequest('/index.html', parsedHeaders[i]!).length,
  },
  {
    name: 'GET /index.html, a User-Agent not seen before',
    run: (engine, i) => engine.inspectRequest('/index.html', FRESH_UA_HEADERS[i & 4095]!).length,
  },
  {
    name: 'GET with a 5-parameter query',
    run: (engine) =>
      engine.inspectRequest('/search?q=running+shoes+for+women&size=10.5&color=navy%20blue&sort=price_asc&page=2', BROWSER_HEADERS).length,
  },
  {
    name: 'GET with a 5-parameter query, cookie and referer',
    run: (engine) =>
      engine.inspectRequest('/search?q=running+shoes+for+women&size=10.5&color=navy%20blue&sort=price_asc&page=2', SESSION_HEADERS).length,
  },
  { name: `POST body: ${JSON_2K.length} B of JSON`, run: (engine) => engine.inspectBody(JSON_2K, 'application/json').length },
];

function measure(engine: IdsEngine, bench: Case): { median: number; min: number; max: number } {
  let sink = 0;
  bench.prepare?.();
  for (let i = 0; i < Math.min(CALLS, 20_000); i++) sink += bench.run(engine, i);
  const perCall: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    bench.prepare?.();
    const start = process.hrtime.bigint();
    for (let i = 0; i < CALLS; i++) sink += bench.run(engine, i);
    perCall.push(Number(process.hrtime.bigint() - start) / CALLS);
  }
  if (sink !== 0) throw new Error(`benign input matched ${sink} times`);
  perCall.sort((a, b) => a - b);
  return { median: perCall[Math.floor(perCall.length / 2)]!, min: perCall[0]!, max: perCall[perCall.length - 1]! };
}

/**
 * IDS_COMPARE=/path/to/other/index.js: that build and this one, round by
 * round in one process, timed by the process's CPU time, so that the ratio
 * holds on a machine other work keeps busy (a wall-clock run there only
 * measures the neighbours).
 */
async function compare(otherPath: string): Promise<void> {
  const other = ((await import(otherPath)) as { createIdsEngine: (rules: []) => IdsEngine }).createIdsEngine([]);
  const engines = [other, createIdsEngine([])];
  console.log(`IDS micro-benchmark, CPU time, ${ROUNDS * 2} interleaved rounds x ${CALLS} calls: ${otherPath} vs ${enginePath}`);
  for (const bench of CASES) {
    const perCall: number[][] = [[], []];
    let sink = 0;
    for (const e of engines) {
      bench.prepare?.();
      for (let i = 0; i < Math.min(CALLS, 20_000); i++) sink += bench.run(e, i);
    }
    for (let round = 0; round < ROUNDS * 2; round++) {
      engines.forEach((e, k) => {
        bench.prepare?.();
        const start = process.cpuUsage();
        for (let i = 0; i < CALLS; i++) sink += bench.run(e, i);
        const used = process.cpuUsage(start);
        perCall[k]!.push(((used.user + used.system) * 1000) / CALLS);
      });
    }
    if (sink !== 0) throw new Error(`benign input matched ${sink} times`);
    const [before, after] = perCall.map((values) => values.sort((a, b) => a - b)[values.length >> 1]!) as [number, number];
    console.log(
      `${bench.name.padEnd(52)} ${before.toFixed(0).padStart(7)} ns -> ${after.toFixed(0).padStart(7)} ns  x${(after / before).toFixed(2)}`,
    );
  }
}

const compareWith = process.env.IDS_COMPARE;
if (compareWith !== undefined) {
  await compare(compareWith);
} else {
  const engine = createIdsEngine([]);
  console.log(
    `IDS micro-benchmark: node ${process.version}, engine ${enginePath}, ${ROUNDS} rounds x ${CALLS} calls, median [min-max] ns per call`,
  );
  for (const bench of CASES) {
    const { median, min, max } = measure(engine, bench);
    console.log(`${bench.name.padEnd(52)} ${median.toFixed(0).padStart(7)} ns  [${min.toFixed(0)}-${max.toFixed(0)}]`);
  }
}
