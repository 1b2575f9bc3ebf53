/**
 * Which [security.audit] switch an audit event answers to, decided in one
 * place for the worker (which does not send what is off) and the master
 * (which writes): log_security_events, log_authentication (logins, events
 * named auth.*), log_authorization (who may be served: a client refused by
 * the access lists or a ban, events named access.*),
 * log_configuration_changes, log_admin_actions.
 */
import type { AuditSpec } from '../config/types.js';

export type AuditCategory = 'configuration' | 'security' | 'admin' | 'authentication' | 'authorization';

/** Access decisions about a client: refused for being listed or banned, or by a site's access lists. */
const AUTHORIZATION_EVENTS: ReadonlySet<string> = new Set([
  'request.client_blocked',
  'connection.blacklisted',
  'connection.banned',
  'request.access_denied',
]);

/** The category of `event`, reported by its source as `reported`. */
export function auditCategory(event: string, reported: AuditCategory): AuditCategory {
  if (event.startsWith('auth.')) return 'authentication';
  if (AUTHORIZATION_EVENTS.has(event) || event.startsWith('access.')) return 'authorization';
  return reported;
}

/** Whether the config writes events of `category`. */
export function auditCategoryEnabled(spec: AuditSpec, category: AuditCategory): boolean {
  if (!spec.enabled) return false;
  switch (category) {
    case 'authentication':
      return spec.logAuthentication;
    case 'authorization':
      return spec.logAuthorization;
    case 'configuration':
      return spec.logConfigurationChanges;
    case 'admin':
      return spec.logAdminActions;
    case 'security':
      return spec.logSecurityEvents;
  }
}
