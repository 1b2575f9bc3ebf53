/**
 * The worker's side of the audit log: security events go to the master
 * over IPC, which alone writes the audit file (src/master/audit-log.ts).
 * Fields are truncated here to what the master accepts; request headers
 * are copied only when [security.audit].include_headers names them (the
 * compiler has already taken credentials out of that list).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { AuditSpec } from '../config/types.js';
import { MAX_AUDIT_FIELD_CHARS, type AuditEvent, type WorkerMessage } from '../ipc/messages.js';

export type Audit = (event: AuditEvent, requestHeaders?: IncomingHttpHeaders) => void;

const clip = (text: string | undefined): string | undefined => (text === undefined ? undefined : text.slice(0, MAX_AUDIT_FIELD_CHARS));

export function createAudit(spec: AuditSpec): Audit {
  if (!spec.enabled || !spec.logSecurityEvents) return () => undefined;
  const wanted = spec.includeHeaders;
  return (event, requestHeaders) => {
    let headers: Record<string, string> | undefined;
    if (requestHeaders !== undefined && wanted.length > 0) {
      headers = {};
      for (const name of wanted) {
        const value = requestHeaders[name];
        if (value !== undefined) headers[name] = clip(Array.isArray(value) ? value.join(', ') : value)!;
      }
    }
    const message: WorkerMessage = {
      type: 'AUDIT_EVENT',
      event: {
        event: event.event,
        ...(event.status !== undefined && { status: event.status }),
        ...(event.clientIp !== undefined && { clientIp: clip(event.clientIp) }),
        ...(event.method !== undefined && { method: clip(event.method) }),
        ...(event.host !== undefined && { host: clip(event.host) }),
        ...(event.path !== undefined && { path: clip(event.path) }),
        ...(event.detail !== undefined && { detail: clip(event.detail) }),
        ...(headers !== undefined && { headers }),
      },
    };
    process.send?.(message);
  };
}
