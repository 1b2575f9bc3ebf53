/**
 * The worker's side of the audit log: security events go to the master
 * over the channel, which alone writes the audit file
 * (src/master/audit-log.ts). Fields are truncated here to what the master
 * accepts, and an event whose frame would still exceed the channel's cap
 * (escaped characters) is sent without its headers, then with shorter
 * fields; request headers are copied only when [security.audit].include_headers
 * names them (the compiler has already taken credentials out of that list).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { AuditSpec } from '../config/types.js';
import { auditCategory, auditCategoryEnabled } from '../logging/audit-categories.js';
import { MAX_AUDIT_FIELD_CHARS, type AuditEvent, type WorkerMessage } from '../ipc/messages.js';

export type Audit = (event: AuditEvent, requestHeaders?: IncomingHttpHeaders) => void;

const clip = (text: string | undefined, chars = MAX_AUDIT_FIELD_CHARS): string | undefined =>
  text === undefined ? undefined : text.slice(0, chars);

/** Field length of the last resort, when an event's frame is too large even without headers. */
const SHORT_FIELD_CHARS = 128;

/** Where events go: the channel to the master (set once by the worker's entry). False when a message was too large to send. */
let sendToMaster: (message: WorkerMessage) => boolean = () => true;

export function connectAudit(send: (message: WorkerMessage) => boolean): void {
  sendToMaster = send;
}

/** The event with its string fields cut to `chars`. */
function shortened(event: AuditEvent, chars: number): AuditEvent {
  return {
    event: event.event,
    ...(event.status !== undefined && { status: event.status }),
    ...(event.clientIp !== undefined && { clientIp: clip(event.clientIp, chars) }),
    ...(event.method !== undefined && { method: clip(event.method, chars) }),
    ...(event.host !== undefined && { host: clip(event.host, chars) }),
    ...(event.path !== undefined && { path: clip(event.path, chars) }),
    ...(event.detail !== undefined && { detail: clip(event.detail, chars) }),
  };
}

/**
 * `kind` is what the caller's events are: security events, or logins. Each
 * event is sent only when its category's switch is on
 * (logging/audit-categories.ts: access refusals answer to log_authorization).
 */
export function createAudit(spec: AuditSpec, kind: 'security' | 'authentication' = 'security'): Audit {
  if (!spec.enabled) return () => undefined;
  const wanted = spec.includeHeaders;
  return (event, requestHeaders) => {
    if (!auditCategoryEnabled(spec, auditCategory(event.event, kind))) return;
    let headers: Record<string, string> | undefined;
    if (requestHeaders !== undefined && wanted.length > 0) {
      headers = {};
      for (const name of wanted) {
        const value = requestHeaders[name];
        if (value !== undefined) headers[name] = clip(Array.isArray(value) ? value.join(', ') : value)!;
      }
    }
    const clipped = shortened(event, MAX_AUDIT_FIELD_CHARS);
    if (sendToMaster({ type: 'AUDIT_EVENT', event: { ...clipped, ...(headers !== undefined && { headers }) } })) return;
    if (headers !== undefined && sendToMaster({ type: 'AUDIT_EVENT', event: clipped })) return;
    sendToMaster({ type: 'AUDIT_EVENT', event: shortened(event, SHORT_FIELD_CHARS) });
  };
}

/** Most distinct keys a throttle remembers; past it, the table starts over (letting one more event through per key). */
const THROTTLE_MAX_KEYS = 10_000;

/**
 * For events a client can cause at line rate (429s, refused connections):
 * at most one per key (event and client) per window. Returns null to
 * suppress, else how many were suppressed since the last one let through,
 * which the event then reports: the audit log keeps the count, not the flood.
 */
export function createAuditThrottle(windowMs = 1000): (key: string) => number | null {
  let seen = new Map<string, { at: number; suppressed: number }>();
  return (key) => {
    const now = performance.now();
    const entry = seen.get(key);
    if (entry !== undefined && now - entry.at < windowMs) {
      entry.suppressed += 1;
      return null;
    }
    if (seen.size >= THROTTLE_MAX_KEYS) seen = new Map();
    seen.set(key, { at: now, suppressed: 0 });
    return entry?.suppressed ?? 0;
  };
}

/** The detail of a throttled event, saying how many like it were not written. */
export function withSuppressed(detail: string | undefined, suppressed: number): string | undefined {
  return suppressed > 0 ? `${detail ?? ''} (${suppressed} more in the last second not logged)`.trim() : detail;
}
