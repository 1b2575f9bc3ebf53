/**
 * The control socket's catalogue: what `miwidothttp status|reload|stop|ban|
 * certs` may ask the running master, and what each answer holds. The wire is
 * one JSON request line in, one JSON answer line out (the server:
 * master/control.ts; the client: cli/running.ts). A request is parsed here,
 * closed and bounded, before the master acts on it; anything else is
 * answered `unknown request`.
 */
import type { ListenerSpec } from '../config/types.js';

export type ControlRequest =
  | { command: 'status' }
  /** `config`: the file `reload -c FILE` named (absolute); absent, the master's own file. */
  | { command: 'reload'; config?: string }
  | { command: 'stop' }
  | { command: 'ban_list' }
  | { command: 'certs' }
  | { command: 'ban_add'; ip: string; seconds?: number; reason: string }
  | { command: 'ban_remove'; ip: string }
  | ClusterRequest;

/** `miwidothttp cluster ...`: one command, its action named. */
export type ClusterRequest =
  | { command: 'cluster'; action: 'status' }
  | { command: 'cluster'; action: 'push'; file: string }
  | { command: 'cluster'; action: 'admit'; name: string }
  | { command: 'cluster'; action: 'remove'; name: string }
  | { command: 'cluster'; action: 'rejoin' };

const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
const MAX_PATH_CHARS = 900;

function parseClusterRequest(request: Record<string, unknown>): ClusterRequest | null {
  switch (request.action) {
    case 'status':
    case 'rejoin':
      return { command: 'cluster', action: request.action };
    case 'push':
      return typeof request.file === 'string' && request.file.startsWith('/') && request.file.length <= MAX_PATH_CHARS
        ? { command: 'cluster', action: 'push', file: request.file }
        : null;
    case 'admit':
    case 'remove':
      return typeof request.name === 'string' && NODE_NAME.test(request.name)
        ? { command: 'cluster', action: request.action, name: request.name }
        : null;
    default:
      return null;
  }
}

/** Longest ban an admin may set: a year. */
export const MAX_BAN_SECONDS = 365 * 86400;

/** A request line longer than this is cut off unanswered. */
export const MAX_CONTROL_REQUEST_BYTES = 1024;

export function parseControlRequest(text: string): ControlRequest | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object') return null;
  const request = value as Record<string, unknown>;
  const command = request.command;
  const isText = (field: unknown, max: number): field is string => typeof field === 'string' && field.length <= max;
  switch (command) {
    case 'reload': {
      const { config } = request;
      if (config === undefined) return { command };
      return typeof config === 'string' && config.startsWith('/') && config.length <= MAX_PATH_CHARS ? { command, config } : null;
    }
    case 'status':
    case 'stop':
    case 'ban_list':
    case 'certs':
      return { command };
    case 'ban_add': {
      const { ip, seconds, reason } = request;
      if (!isText(ip, 64) || !isText(reason ?? '', 200)) return null;
      if (seconds !== undefined && (!Number.isSafeInteger(seconds) || (seconds as number) < 1 || (seconds as number) > MAX_BAN_SECONDS))
        return null;
      return { command, ip, reason: (reason as string | undefined) ?? '', ...(seconds !== undefined && { seconds: seconds as number }) };
    }
    case 'ban_remove':
      return isText(request.ip, 64) ? { command, ip: request.ip } : null;
    case 'cluster':
      return parseClusterRequest(request);
    default:
      return null;
  }
}

/** A request the master would not or could not carry out, and why. */
export interface ControlRefusal {
  readonly ok: false;
  readonly reason: string;
}

/** One worker, as `status` lists it. */
export interface WorkerView {
  readonly pid: number | null;
  readonly uid: number | null;
  readonly slot: number;
  readonly generation: number;
  readonly state: string;
  readonly uptimeSeconds: number;
  readonly restarts: number;
  readonly rssBytes: number | null;
  readonly cpuPercent: number | null;
}

/** One line of `miwidothttp certs`: never a key. */
export interface CertificateView {
  name: string;
  source: 'manual' | 'acme' | 'cloudflare';
  subjectNames: string[];
  issuer: string | null;
  notBefore: string | null;
  notAfter: string | null;
  fingerprint256: string | null;
  nextRenewal: string | null;
  lastError: string | null;
}

/** A ban as the CLI shows it: the end as an ISO date. */
export interface BanView {
  readonly ip: string;
  readonly until: string;
  readonly source: string;
  readonly reason: string;
}

/** The answer to each command. */
export interface ControlAnswers {
  status: {
    ok: true;
    master: { pid: number; generation: number; config: string; uptimeSeconds: number };
    workers: readonly WorkerView[];
    listeners: readonly ListenerSpec[];
    /** null when the node is not clustered. */
    cluster: ClusterSummary | null;
  };
  reload: { ok: true; generation: number } | ControlRefusal;
  stop: { ok: true; pid: number };
  certs: { ok: true; certificates: readonly CertificateView[]; lastError: string | null };
  ban_list: { ok: true; bans: readonly BanView[] };
  ban_add: { ok: true; ban: BanView } | ControlRefusal;
  ban_remove: { ok: true } | ControlRefusal;
  cluster: ClusterStatus | PushAnswer | { ok: true; detail: string } | ControlRefusal;
}

/** The node's cluster state in `status`. */
export interface ClusterSummary {
  readonly node: string;
  readonly read_only: boolean;
  readonly quorum: boolean;
  readonly config_revision: string | null;
}

/** One node in `cluster status --json`. */
export interface NodeView {
  name: string;
  alive: boolean;
  admitted: boolean;
  config_revision: string | null;
  last_reload: string | null;
  last_reload_ok: boolean | null;
  last_reload_error: string | null;
}

export interface ClusterStatus {
  ok: true;
  node: string;
  read_only: boolean;
  quorum: boolean;
  /** Why the node is read-only, and since when (ISO); null when writable. */
  read_only_reason: string | null;
  read_only_since: string | null;
  config_revision: string | null;
  cluster_config_revision: string | null;
  /** Read from a member that may lag (the node has no quorum). */
  stale: boolean;
  nodes: NodeView[];
  etcd: { endpoint: string; answered: boolean; leader: string | null }[];
}

/** `cluster push`: each live node's answer; ok when all run the revision. */
export interface PushAnswer {
  ok: boolean;
  reason?: string;
  revision?: string;
  nodes?: { name: string; ok: boolean; reason: string | null }[];
}

/** What the master may answer to `request`; any request may also be refused (unknown, internal error). */
export type ControlAnswer<C extends ControlRequest['command'] = ControlRequest['command']> = ControlAnswers[C] | ControlRefusal;
