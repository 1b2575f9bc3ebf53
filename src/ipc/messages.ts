/**
 * The closed catalogue of messages between master and worker, carried as
 * frames over the worker's channel (frames.ts).
 *
 * Master -> worker messages come from the privileged side and are trusted for
 * shape. Worker -> master messages come from the side that parses untrusted
 * bytes: each frame is capped before it is read, checked for nesting before
 * it is parsed, and the message for shape, size and vocabulary on arrival;
 * anything unknown or malformed is fatal for that worker (the master kills
 * it), never for the master.
 */
import type { CompiledConfig, ListenerSpec } from '../config/types.js';
import { clientKey } from '../net/cidr.js';
import type { CertificateMaterial } from '../tls/material.js';
import { MAX_WORKER_FRAME_BYTES, MAX_WORKER_MESSAGE_DEPTH, nestingWithin } from './frames.js';
import { WORKER_AUDIT_EVENTS, WORKER_REJECTION_REASONS } from './worker-events.js';

/** The master's answer to a new connection (limits per client, server-wide). */
export type ConnectVerdict = 'ok' | 'max_connections' | 'max_connections_per_ip' | 'connection_rate' | 'banned';
const _CONNECT_VERDICTS: readonly string[] = ['ok', 'max_connections', 'max_connections_per_ip', 'connection_rate', 'banned'];

/** Entries per batched message (LIM_CLOSED, LIM_REPORT, MET_REPORT's lists): keeps each well under MAX_WORKER_FRAME_BYTES. */
export const MAX_BATCH_ENTRIES = 48;

/** Master -> worker. */
export type MasterMessage =
  /** The generation's config; the listeners follow, one CFG_LISTENER each. */
  | { type: 'CFG_INIT'; generation: number; config: CompiledConfig }
  /**
   * The listening socket for `listener` is the worker's descriptor `fd`,
   * inherited at spawn (bound and listening: the worker only accepts).
   */
  | { type: 'CFG_LISTENER'; listener: ListenerSpec; fd: number }
  /** Every listener has been sent: start accepting and report CTL_READY. */
  | { type: 'CFG_START' }
  /** Stop accepting, finish in-flight requests, exit within deadlineMs. */
  | { type: 'CTL_DRAIN'; deadlineMs: number }
  /** Liveness: answer CTL_PONG with the same `seq` from the event loop, at once. */
  | { type: 'CTL_PING'; seq: number }
  /** The answer to LIM_CONNECT `id`. */
  | { type: 'LIM_ADMIT'; id: number; verdict: ConnectVerdict }
  /** The answer to LIM_LEASE `id`: tokens to spend, or when to ask again. */
  | { type: 'LIM_GRANT'; id: number; granted: number; retryAfterMs: number }
  /** Every ban in force (sent before CFG_START), then each change. Times are epoch ms. */
  | { type: 'BAN_SYNC'; bans: [ip: string, until: number][] }
  | { type: 'BAN_ADD'; ip: string; until: number }
  | { type: 'BAN_LIFT'; ip: string }
  /**
   * Certificates and keys for the HTTPS listeners (sent before CFG_START),
   * the session ticket key every worker shares (base64, 48 bytes) and the
   * session ID context, so a session made on one worker resumes on another.
   */
  | { type: 'TLS_INIT'; certificates: CertificateMaterial[]; ticketKey: string; sessionIdContext: string }
  /** The master rotated the session ticket key (every worker at once). */
  | { type: 'TLS_TICKET_KEY'; ticketKey: string }
  /**
   * The whole set of certificates changed (one issued or renewed): it
   * replaces the set of TLS_INIT for new handshakes; connections already
   * open keep theirs. May arrive before CFG_START.
   */
  | { type: 'TLS_CERTS'; certificates: CertificateMaterial[] }
  /**
   * The ACME challenges being validated now, the whole set each time it
   * changes (sent before CFG_START too): HTTP-01 key authorizations by token,
   * answered at [ssl.challenges] http_01_path; TLS-ALPN-01 certificates by
   * name, served to handshakes that offer "acme-tls/1" for that name. The
   * worker answers ACME_ACK with the same version once it serves the set.
   */
  | { type: 'ACME_CHALLENGES'; version: number; http01: [token: string, keyAuthorization: string][]; tlsAlpn01: AlpnChallenge[] }
  /** The answer to MET_SCRAPE `id`: the Prometheus exposition text. */
  | { type: 'MET_TEXT'; id: number; text: string }
  /**
   * The answer to DASH_QUERY `id`: the dashboard's state as JSON text, which
   * the worker passes on unparsed. Read-only data, no secret: audit events
   * carry the audit log's redaction, at most MAX_DASHBOARD_STATE_BYTES.
   */
  | { type: 'DASH_STATE'; id: number; json: string };

/** Worker -> master. */
export type WorkerMessage =
  | { type: 'CTL_READY'; generation: number }
  /** The answer to CTL_PING `seq`. */
  | { type: 'CTL_PONG'; seq: number }
  | { type: 'AUDIT_EVENT'; event: AuditEvent }
  /** A connection from `ip` was accepted and waits, unread, for LIM_ADMIT. */
  | { type: 'LIM_CONNECT'; id: number; ip: string }
  /** Connections LIM_ADMIT let in have closed (one entry per connection). */
  | { type: 'LIM_CLOSED'; ips: string[] }
  /** Up to `want` request tokens for `ip`. */
  | { type: 'LIM_LEASE'; id: number; ip: string; want: number }
  /** Per client: leased tokens left unspent, and requests refused (429) locally since the last report. */
  | { type: 'LIM_REPORT'; entries: [ip: string, unspent: number, refused: number][] }
  /** An IDS rule matched a request from `ip`; the master keeps the score per client. */
  | { type: 'IDS_MATCH'; ip: string; rule: string; score: number }
  /** Counts since the last report: [vhost, status, n], [reason, n], [rule, n]; and the open connections now. */
  | {
      type: 'MET_REPORT';
      connections: number;
      requests: [vhost: string, status: number, count: number][];
      rejections: [reason: string, count: number][];
      idsMatches: [rule: string, count: number][];
    }
  /** Someone asked the metrics listener this worker serves: the master has the totals. */
  | { type: 'MET_SCRAPE'; id: number }
  /**
   * Someone holding the token asked the dashboard listener this worker
   * serves. Permitted only to a worker whose generation has a dashboard
   * listener, and one at a time: a second before DASH_STATE answers the
   * first is fatal for the worker.
   */
  | { type: 'DASH_QUERY'; id: number }
  /** The worker serves ACME_CHALLENGES `version` (the master tells the CA to validate only then). */
  | { type: 'ACME_ACK'; version: number };

/** A TLS-ALPN-01 challenge (RFC 8737): the self-signed certificate for `name` with the acmeIdentifier extension. */
export interface AlpnChallenge {
  readonly name: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * A security event seen by a worker, written to the audit log by the master
 * (one writer: lines never interleave). Every field is a bounded string or
 * number; `headers` holds only the names [security.audit].include_headers
 * allows, never a credential.
 */
export interface AuditEvent {
  readonly event: string;
  readonly status?: number;
  readonly clientIp?: string;
  readonly method?: string;
  readonly host?: string;
  readonly path?: string;
  readonly detail?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Longest string any audit field may carry (the worker truncates to it). */
export const MAX_AUDIT_FIELD_CHARS = 512;
const MAX_AUDIT_HEADERS = 16;
const AUDIT_STRING_FIELDS = ['event', 'clientIp', 'method', 'host', 'path', 'detail'] as const;

/** The largest DASH_STATE the master sends: the collector leaves out the oldest events to stay under it. */
export const MAX_DASHBOARD_STATE_BYTES = 1024 * 1024;

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Why a worker's frame was refused: the rule it broke, and what was seen (for the audit event). */
export interface MessageFault {
  readonly rule: 'message.encoding' | 'message.nesting' | 'message.json' | 'message.catalogue';
  readonly detail: string;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * One frame's payload from a worker, decoded. Never throws: whatever the
 * bytes, the answer is a catalogue message or the fault that ends the
 * worker. The payload is at most MAX_WORKER_FRAME_BYTES (the frame reader
 * refused larger ones before reading them).
 */
export function decodeWorkerMessage(payload: Buffer): WorkerMessage | MessageFault {
  try {
    if (payload.length > MAX_WORKER_FRAME_BYTES) return { rule: 'message.catalogue', detail: `${payload.length} bytes` };
    let text: string;
    try {
      text = UTF8.decode(payload);
    } catch {
      return { rule: 'message.encoding', detail: 'not UTF-8' };
    }
    if (!nestingWithin(payload, MAX_WORKER_MESSAGE_DEPTH))
      return { rule: 'message.nesting', detail: `nested deeper than ${MAX_WORKER_MESSAGE_DEPTH}` };
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { rule: 'message.json', detail: `not JSON: ${JSON.stringify(text.slice(0, 40))}` };
    }
    const message = parseWorkerMessage(value);
    if (message !== null) return message;
    const type = value !== null && typeof value === 'object' && 'type' in value ? (value as { type: unknown }).type : undefined;
    return { rule: 'message.catalogue', detail: `not in the catalogue: type ${JSON.stringify(type)?.slice(0, 40) ?? 'missing'}` };
  } catch (error) {
    // Nothing above should throw; if it does, it is still this worker's frame that did it.
    return { rule: 'message.json', detail: `undecodable (${(error as Error).name})` };
  }
}

/** Every catalogue message has a `type`; a fault has none (IDS_MATCH has a `rule` too: `type` is what tells them apart). */
export const isFault = (decoded: WorkerMessage | MessageFault): decoded is MessageFault => !('type' in decoded);

/**
 * Returns the message if it is exactly one of the catalogue's shapes, with
 * names from the worker's closed vocabulary (worker-events.ts), else null.
 * `value` is a parsed JSON value no deeper than MAX_WORKER_MESSAGE_DEPTH.
 */
export function parseWorkerMessage(value: unknown): WorkerMessage | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const message = value as Record<string, unknown>;
  const keys = Object.keys(message).sort().join(',');
  switch (message.type) {
    case 'CTL_READY':
      return keys === 'generation,type' && isCount(message.generation) ? { type: 'CTL_READY', generation: message.generation } : null;
    case 'CTL_PONG':
      return keys === 'seq,type' && isCount(message.seq) ? { type: 'CTL_PONG', seq: message.seq } : null;
    case 'AUDIT_EVENT':
      return keys === 'event,type' && isAuditEvent(message.event) ? { type: 'AUDIT_EVENT', event: message.event } : null;
    case 'LIM_CONNECT':
      return keys === 'id,ip,type' && isCount(message.id) && isClientKey(message.ip)
        ? { type: 'LIM_CONNECT', id: message.id, ip: message.ip }
        : null;
    case 'LIM_CLOSED':
      return keys === 'ips,type' && isBatch(message.ips) && message.ips.every(isClientKey)
        ? { type: 'LIM_CLOSED', ips: message.ips }
        : null;
    case 'LIM_LEASE':
      return keys === 'id,ip,type,want' &&
        isCount(message.id) &&
        isClientKey(message.ip) &&
        isCount(message.want) &&
        message.want <= MAX_TOKENS
        ? { type: 'LIM_LEASE', id: message.id, ip: message.ip, want: message.want }
        : null;
    case 'LIM_REPORT':
      return keys === 'entries,type' && isBatch(message.entries) && message.entries.every(isReportEntry)
        ? { type: 'LIM_REPORT', entries: message.entries as [string, number, number][] }
        : null;
    case 'MET_SCRAPE':
      return keys === 'id,type' && isCount(message.id) ? { type: 'MET_SCRAPE', id: message.id } : null;
    case 'DASH_QUERY':
      return keys === 'id,type' && isCount(message.id) ? { type: 'DASH_QUERY', id: message.id } : null;
    case 'ACME_ACK':
      return keys === 'type,version' && isCount(message.version) ? { type: 'ACME_ACK', version: message.version } : null;
    case 'MET_REPORT':
      return keys === 'connections,idsMatches,rejections,requests,type' &&
        isCount(message.connections) &&
        isList(message.requests) &&
        message.requests.every((entry) => isTuple(entry, [isLabel, isStatus, isCount])) &&
        isList(message.rejections) &&
        message.rejections.every((entry) => isTuple(entry, [isRejectionReason, isCount])) &&
        isList(message.idsMatches) &&
        message.idsMatches.every((entry) => isTuple(entry, [isRuleName, isCount]))
        ? (message as unknown as WorkerMessage)
        : null;
    case 'IDS_MATCH':
      return keys === 'ip,rule,score,type' &&
        isClientKey(message.ip) &&
        isRuleName(message.rule) &&
        isCount(message.score) &&
        message.score <= MAX_IDS_SCORE
        ? { type: 'IDS_MATCH', ip: message.ip, rule: message.rule, score: message.score }
        : null;
    default:
      return null;
  }
}

/** Most tokens one lease or report may name. */
const MAX_TOKENS = 1_000_000;
const MAX_IDS_SCORE = 1000;

/** Only canonical addresses: the master keys its tables on exactly this text. */
const isClientKey = (value: unknown): value is string => typeof value === 'string' && value.length <= 45 && clientKey(value) === value;
const isBatch = (value: unknown): value is unknown[] => Array.isArray(value) && value.length > 0 && value.length <= MAX_BATCH_ENTRIES;
const isRuleName = (value: unknown): value is string => typeof value === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(value);
const isReportEntry = (value: unknown): boolean =>
  Array.isArray(value) &&
  value.length === 3 &&
  isClientKey(value[0]) &&
  isCount(value[1]) &&
  (value[1] as number) <= MAX_TOKENS &&
  isCount(value[2]) &&
  (value[2] as number) <= MAX_TOKENS;

const isList = (value: unknown): value is unknown[] => Array.isArray(value) && value.length <= MAX_BATCH_ENTRIES;
const isTuple = (value: unknown, checks: ((part: unknown) => boolean)[]): boolean =>
  Array.isArray(value) && value.length === checks.length && checks.every((check, i) => check(value[i]));
/** A vhost's first name ("" when none matched): what a domain in the config may look like. */
const isLabel = (value: unknown): boolean => typeof value === 'string' && /^[*a-z0-9.-]{0,253}$/.test(value);
/** What Node lets a response carry (100-999, http.ServerResponse.writeHead). */
const isStatus = (value: unknown): boolean => isCount(value) && (value as number) >= 100 && (value as number) <= 999;
const isRejectionReason = (value: unknown): boolean => typeof value === 'string' && WORKER_REJECTION_REASONS.has(value);

const isBoundedString = (value: unknown): value is string => typeof value === 'string' && value.length <= MAX_AUDIT_FIELD_CHARS;

function isAuditEvent(value: unknown): value is AuditEvent {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const event = value as Record<string, unknown>;
  if (typeof event.event !== 'string' || !WORKER_AUDIT_EVENTS.has(event.event)) return false;
  for (const key of Object.keys(event)) {
    if (key === 'status') {
      if (!isCount(event.status) || (event.status as number) > 999) return false;
    } else if (key === 'headers') {
      const headers = event.headers;
      if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return false;
      const entries = Object.entries(headers);
      if (entries.length > MAX_AUDIT_HEADERS || !entries.every(([name, text]) => isBoundedString(name) && isBoundedString(text)))
        return false;
    } else if (!(AUDIT_STRING_FIELDS as readonly string[]).includes(key) || (event[key] !== undefined && !isBoundedString(event[key]))) {
      return false;
    }
  }
  return true;
}
