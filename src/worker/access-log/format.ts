/**
 * Access log lines: nginx's "combined" format, byte for byte as nginx writes
 * it (so goaccess --log-format=COMBINED and every shipper that reads nginx
 * logs read it), or one JSON object a line. Pure.
 *
 *   $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
 *
 * Strings are escaped as nginx escapes them (ngx_http_log_escape): `"`,
 * `\`, control characters and bytes above 0x7e as \xHH, so a line is always
 * one line and a quote can never end a field early. Times are UTC (the
 * worker's jail has no time zone database), which the format's offset says.
 */

export interface AccessRecord {
  readonly clientIp: string;
  readonly user: string | null;
  /** Epoch ms when the request arrived. */
  readonly startedAtMs: number;
  readonly method: string;
  /** Path, and the query when the config keeps queries. */
  readonly target: string;
  /** "HTTP/1.1", "HTTP/2.0". */
  readonly protocol: string;
  readonly status: number;
  readonly bodyBytes: number;
  readonly referer: string | undefined;
  readonly userAgent: string | undefined;
  readonly host: string;
  readonly durationMs: number;
  readonly event: string | null;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** nginx's $time_local: 10/Oct/2000:13:55:36 +0000. */
export function timeLocal(epochMs: number): string {
  const d = new Date(epochMs);
  return `${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
}

const NEEDS_ESCAPE = /["\\\x00-\x1f\x7f-\uffff]/;

/** ngx_http_log_escape: the UTF-8 bytes of `"`, `\`, controls and non-ASCII as \xHH. */
export function escapeField(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out +=
      byte === 0x22 || byte === 0x5c || byte < 0x20 || byte > 0x7e
        ? `\\x${byte.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(byte);
  }
  return out;
}

/** Escaped fields are cut to these many characters, so that a line stays under MAX_ACCESS_LINE_BYTES whatever the request held. */
const MAX_REQUEST_CHARS = 12288;
const MAX_HEADER_CHARS = 4096;

const orDash = (text: string | null | undefined, max = MAX_HEADER_CHARS): string =>
  text === undefined || text === null || text === '' ? '-' : escapeField(text).slice(0, max);

export function combinedLine(record: AccessRecord): string {
  const request = escapeField(`${record.method} ${record.target} ${record.protocol}`).slice(0, MAX_REQUEST_CHARS);
  return `${orDash(record.clientIp, 64)} - ${orDash(record.user, 256)} [${timeLocal(record.startedAtMs)}] "${request}" ${record.status} ${record.bodyBytes} "${orDash(record.referer)}" "${orDash(record.userAgent)}"\n`;
}

export function jsonLine(record: AccessRecord): string {
  return `${JSON.stringify({
    time: new Date(record.startedAtMs).toISOString(),
    client_ip: record.clientIp,
    user: record.user ?? undefined,
    method: record.method,
    host: record.host,
    target: record.target.slice(0, MAX_REQUEST_CHARS),
    protocol: record.protocol,
    status: record.status,
    bytes: record.bodyBytes,
    referer: record.referer?.slice(0, MAX_HEADER_CHARS),
    user_agent: record.userAgent?.slice(0, MAX_HEADER_CHARS),
    duration_ms: record.durationMs,
    event: record.event ?? undefined,
  })}\n`;
}
