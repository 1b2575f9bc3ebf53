/**
 * The servers `npm run bench` compares and the scenarios it drives them
 * through: which server takes part in which scenario, on which port and
 * protocol, with which load generator.
 */
import { FILE_NAME, LARGE_FILE_NAME, PAGE_NAME, settings } from './settings.js';
import { TLS_HOST } from './tls.js';
import { BROWSER_ACCEPT_ENCODING } from './wrk.js';

/** The miwidothttp instances, each through the real CLI: as configured by default, and with rate limiting. */
export type Instance = 'miwidothttp' | 'miwidothttp-ratelimit';
/** The worker's code alone (bench/pipeline-server.ts), one worker each. */
export type Variant = 'pipeline-full' | 'pipeline-off' | 'pipeline-ids';
export type ServerName = Instance | Variant | 'node' | 'nginx' | 'caddy' | 'haproxy';
export const INSTANCES: readonly Instance[] = ['miwidothttp', 'miwidothttp-ratelimit'];
export const VARIANTS: readonly Variant[] = ['pipeline-full', 'pipeline-off', 'pipeline-ids'];

export type ScenarioName =
  | 'static'
  | 'proxy'
  | 'proxy-compressed'
  | 'proxy-identity'
  | 'tls-handshake'
  | 'https-keepalive'
  | 'http2'
  | 'large-file'
  | 'latency';

/** How a scenario reaches a server: plain HTTP/1.1, HTTP/1.1 over TLS, or HTTP/2 over TLS (ALPN h2). */
export type Transport = 'http' | 'https' | 'h2';

export interface ScenarioSpec {
  readonly label: string;
  readonly host: string;
  readonly path: string;
  readonly transport: Transport;
  /** wrk; h2load with HTTP/2 streams; h2load over HTTP/1.1 at a fixed rate (half nginx's static peak). */
  readonly tool: 'wrk' | 'h2load' | 'h2load-rate';
  readonly connections: number;
  /** Headers after the browser-like ones. */
  readonly headers: readonly string[];
  /**
   * The Accept-Encoding sent with every request (the check included), or
   * null for none: then a server must answer the bytes as stored, and with
   * one a server must answer them compressed (the check says with which coding).
   */
  readonly acceptEncoding: string | null;
  /** wrk preloaded with bench/wrk-full-handshake.c: no session is ever offered. */
  readonly fullHandshakes: boolean;
  readonly servers: readonly ServerName[];
}

const ALL_HTTP: readonly ServerName[] = [
  'miwidothttp',
  'node',
  'nginx',
  'caddy',
  'miwidothttp-ratelimit',
  'pipeline-full',
  'pipeline-off',
  'pipeline-ids',
];
/** TLS compares like with like: the default miwidothttp, the Node ceiling, nginx and Caddy. */
const TLS_SERVERS: readonly ServerName[] = ['miwidothttp', 'node', 'nginx', 'caddy'];

/**
 * The scenarios, in the order a round runs them. "latency" runs last, after
 * every round of the others, at half the median nginx reached on "static".
 */
export const SCENARIOS: Record<ScenarioName, ScenarioSpec> = {
  static: {
    label: 'static 1 KiB',
    host: 'static.test',
    path: `/${FILE_NAME}`,
    transport: 'http',
    tool: 'wrk',
    connections: settings.connections,
    headers: [],
    acceptEncoding: null,
    fullHandshakes: false,
    servers: ALL_HTTP,
  },
  proxy: {
    label: 'proxy 1 KiB',
    host: 'proxy.test',
    path: `/${FILE_NAME}`,
    transport: 'http',
    tool: 'wrk',
    connections: settings.connections,
    headers: [],
    acceptEncoding: null,
    fullHandshakes: false,
    servers: [...ALL_HTTP.slice(0, 4), 'haproxy', ...ALL_HTTP.slice(4)],
  },
  /**
   * A 16 KiB HTML page (bench/html-page.ts) through each proxy, asked for as
   * a browser asks: each proxy compresses the upstream's answer on the fly,
   * with the coding it prefers among those offered (the report names them).
   * The node cluster has no compression to compare, HAProxy is left out.
   */
  'proxy-compressed': {
    label: 'proxy 16 KiB, compressed',
    host: 'proxy.test',
    path: `/${PAGE_NAME}`,
    transport: 'http',
    tool: 'wrk',
    connections: settings.connections,
    headers: [],
    acceptEncoding: BROWSER_ACCEPT_ENCODING,
    fullHandshakes: false,
    servers: ['miwidothttp', 'nginx', 'caddy'],
  },
  /** The same page without Accept-Encoding: what compressing it costs miwidothttp per request. */
  'proxy-identity': {
    label: 'proxy 16 KiB, identity',
    host: 'proxy.test',
    path: `/${PAGE_NAME}`,
    transport: 'http',
    tool: 'wrk',
    connections: settings.connections,
    headers: [],
    acceptEncoding: null,
    fullHandshakes: false,
    servers: ['miwidothttp'],
  },
  /**
   * Every request on a new connection (`Connection: close`), through a wrk
   * that offers no session (bench/wrk-full-handshake.c): req/s is full
   * handshakes per second.
   */
  'tls-handshake': {
    label: 'TLS handshakes',
    host: TLS_HOST,
    path: `/${FILE_NAME}`,
    transport: 'https',
    tool: 'wrk',
    connections: settings.connections,
    headers: ['Connection: close'],
    acceptEncoding: null,
    fullHandshakes: true,
    servers: TLS_SERVERS,
  },
  /**
   * wrk as it comes, connections kept open (the servers' limit of 1000
   * requests each brings a reconnection, resumed when the server allows it,
   * as a returning browser's would be).
   */
  'https-keepalive': {
    label: 'HTTPS keep-alive',
    host: TLS_HOST,
    path: `/${FILE_NAME}`,
    transport: 'https',
    tool: 'wrk',
    connections: settings.connections,
    headers: [],
    acceptEncoding: null,
    fullHandshakes: false,
    servers: TLS_SERVERS,
  },
  /** What browsers speak over HTTPS: h2load, many streams on few connections. */
  http2: {
    label: 'HTTP/2',
    host: TLS_HOST,
    path: `/${FILE_NAME}`,
    transport: 'h2',
    tool: 'h2load',
    connections: settings.h2Connections,
    headers: [],
    acceptEncoding: null,
    fullHandshakes: false,
    servers: TLS_SERVERS,
  },
  /** A file far larger than any cache: throughput, and whether a worker's memory stays flat while it streams. */
  'large-file': {
    label: '100 MB file',
    host: 'static.test',
    path: `/${LARGE_FILE_NAME}`,
    transport: 'http',
    tool: 'wrk',
    connections: settings.largeConnections,
    headers: [],
    acceptEncoding: null,
    fullHandshakes: false,
    servers: ['miwidothttp', 'nginx', 'caddy'],
  },
  /** p50/p99 at a fixed rate every server can sustain: what a visitor feels when the server is not saturated. */
  latency: {
    label: 'fixed-rate latency',
    host: 'static.test',
    path: `/${FILE_NAME}`,
    transport: 'http',
    tool: 'h2load-rate',
    connections: settings.connections,
    headers: [],
    acceptEncoding: null,
    fullHandshakes: false,
    servers: ['miwidothttp', 'node', 'nginx', 'caddy'],
  },
};

export const SCENARIO_ORDER: readonly ScenarioName[] = [
  'static',
  'proxy',
  'proxy-compressed',
  'proxy-identity',
  'tls-handshake',
  'https-keepalive',
  'http2',
  'large-file',
  'latency',
];

const SERVER_LABEL: Record<ServerName, string> = {
  miwidothttp: 'miwidothttp',
  'miwidothttp-ratelimit': '+ rate limiting',
  node: 'node:http cluster',
  nginx: 'nginx',
  caddy: 'Caddy',
  haproxy: 'HAProxy',
  'pipeline-full': 'stages on',
  'pipeline-off': 'stages off',
  'pipeline-ids': 'stages on + IDS',
};

/** The server's name in a row of `scenario`: the node cluster serves TLS through node:https and HTTP/2 through node:http2. */
export function serverLabel(scenario: ScenarioName | null, server: ServerName): string {
  if (server === 'node' && scenario !== null) {
    const transport = SCENARIOS[scenario].transport;
    if (transport === 'https') return 'node:https cluster';
    if (transport === 'h2') return 'node:http2 cluster';
  }
  return SERVER_LABEL[server];
}
