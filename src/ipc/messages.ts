/**
 * The closed catalogue of messages between master and worker.
 *
 * Master -> worker messages come from the privileged side and are trusted for
 * shape. Worker -> master messages come from the side that parses untrusted
 * bytes: each is checked for shape and size on arrival, and anything unknown
 * or malformed is fatal for that worker (the master kills it).
 */
import type { CompiledConfig, ListenerSpec } from '../config/types.js';

/** Master -> worker. */
export type MasterMessage =
  /** The generation's config; the listeners follow, one CFG_LISTENER each. */
  | { type: 'CFG_INIT'; generation: number; config: CompiledConfig }
  /** Sent with a bound (not listening) socket handle attached. */
  | { type: 'CFG_LISTENER'; listener: ListenerSpec }
  /** Every listener has been sent: start accepting and report CTL_READY. */
  | { type: 'CFG_START' }
  /** Stop accepting, finish in-flight requests, exit within deadlineMs. */
  | { type: 'CTL_DRAIN'; deadlineMs: number };

/** Worker -> master. */
export type WorkerMessage = { type: 'CTL_READY'; generation: number } | { type: 'AUDIT_EVENT'; event: AuditEvent };

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

/** The largest worker message the master will parse (the channel itself is JSON). */
export const MAX_WORKER_MESSAGE_BYTES = 4096;

const isCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Returns the message if it is exactly one of the catalogue's shapes, else null. */
export function parseWorkerMessage(value: unknown): WorkerMessage | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  if (JSON.stringify(value).length > MAX_WORKER_MESSAGE_BYTES) return null;
  const message = value as Record<string, unknown>;
  const keys = Object.keys(message).sort().join(',');
  switch (message.type) {
    case 'CTL_READY':
      return keys === 'generation,type' && isCount(message.generation) ? { type: 'CTL_READY', generation: message.generation } : null;
    case 'AUDIT_EVENT':
      return keys === 'event,type' && isAuditEvent(message.event) ? { type: 'AUDIT_EVENT', event: message.event } : null;
    default:
      return null;
  }
}

const isBoundedString = (value: unknown): value is string => typeof value === 'string' && value.length <= MAX_AUDIT_FIELD_CHARS;

function isAuditEvent(value: unknown): value is AuditEvent {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const event = value as Record<string, unknown>;
  if (!isBoundedString(event.event) || !/^[a-z_]+(\.[a-z_]+)+$/.test(event.event)) return false;
  for (const key of Object.keys(event)) {
    if (key === 'status') {
      if (!isCount(event.status) || (event.status as number) > 999) return false;
    } else if (key === 'headers') {
      const headers = event.headers;
      if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return false;
      const entries = Object.entries(headers);
      if (entries.length > MAX_AUDIT_HEADERS || !entries.every(([name, text]) => isBoundedString(name) && isBoundedString(text))) return false;
    } else if (!(AUDIT_STRING_FIELDS as readonly string[]).includes(key) || (event[key] !== undefined && !isBoundedString(event[key]))) {
      return false;
    }
  }
  return true;
}
