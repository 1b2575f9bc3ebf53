/**
 * The names a worker may put in what it sends the master: its audit events
 * (AUDIT_EVENT), its rejection reasons (MET_REPORT) and the built-in IDS
 * rules (IDS_MATCH, MET_REPORT). The master refuses every other name: a
 * worker can never write `admin.*`, `config.*`, `ban.*` or `worker.*`
 * events, nor grow a metric's label set past what the code can say.
 *
 * test/unit/worker-events.test.ts checks that every event the worker's code
 * can emit (its error catalogue, and each literal event name in src/worker)
 * is listed here.
 */

/** The rejections of the worker's error catalogue (src/worker/errors.ts), by event name. */
const REQUEST_REJECTIONS = [
  'request.bad',
  'request.malformed',
  'request.timeout',
  'request.headers_too_large',
  'request.too_many_headers',
  'request.header_name_too_long',
  'request.header_value_too_long',
  'request.bad_header_value',
  'request.missing_host',
  'request.duplicate_host',
  'request.bad_host',
  'request.duplicate_header',
  'request.bad_target',
  'request.version_not_supported',
  'request.url_too_long',
  'request.body_too_large',
  'request.chunk_too_large',
  'request.json_too_deep',
  'request.too_many_form_fields',
  'request.bad_multipart',
  'request.transfer_encoding_not_supported',
  'request.ambiguous_framing',
  'request.body_timeout',
  'request.slow_client',
  'request.client_blocked',
  'request.ids_blocked',
  'request.rate_limited',
  'request.private_client_ip',
  'request.missing_proxy_headers',
  'request.bad_path',
  'request.forbidden_path',
  'request.not_found',
  'request.method_not_allowed',
  'request.unknown_host',
  'request.bad_range',
  'request.upgrade_refused',
  'request.websocket_bad_handshake',
  'request.websocket_version',
  'request.access_denied',
  'auth.required',
  'auth.failed',
  'auth.overloaded',
  'server.internal_error',
  'upstream.unavailable',
  'upstream.bad_response',
  'upstream.timeout',
  'upstream.tls_failed',
] as const;

/** Connection-level refusals and faults (accept gate, PROXY protocol, HTTP/2, TLS). */
const CONNECTION_EVENTS = [
  'connection.banned',
  'connection.blacklisted',
  'connection.limit_exceeded',
  'connection.protocol_error',
  'connection.rapid_reset',
  'connection.reset',
  'connection.settings_timeout',
  'proxy_protocol.untrusted',
  'proxy_protocol.missing',
  'proxy_protocol.malformed',
  'proxy_protocol.timeout',
  'response.write_timeout',
] as const;

/** The dashboard's logins ([server.dashboard]), written to the audit log as authentication events. */
const AUTHENTICATION_EVENTS = ['auth.dashboard_login', 'auth.dashboard_failed', 'auth.dashboard_locked'] as const;

/** Every audit event name a worker may send. */
export const WORKER_AUDIT_EVENTS: ReadonlySet<string> = new Set<string>([
  ...REQUEST_REJECTIONS,
  ...CONNECTION_EVENTS,
  ...AUTHENTICATION_EVENTS,
  'ids.match',
]);

/** Every rejection reason a worker may count in MET_REPORT. */
export const WORKER_REJECTION_REASONS: ReadonlySet<string> = new Set<string>([
  ...REQUEST_REJECTIONS,
  ...CONNECTION_EVENTS,
  'tls.handshake_failed',
]);

/** The IDS's built-in rules (src/worker/ids/); custom ones are named by [[security.ids.rules]]. */
export const BUILTIN_IDS_RULES: readonly string[] = ['sqli', 'xss', 'path-traversal', 'command-injection', 'expression-injection'];
