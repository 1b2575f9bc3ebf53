// Over 400 lines: the whole config language, each key beside the comment docs/config.md is generated from.
/**
 * The TOML config language: every section ([server], [ssl], [security],
 * [process], [cluster], [[vhosts]]) and every key, with its default and the
 * comment docs/config.md is generated from.
 *
 * This file is the one place where defaults live. Keys keep the names and
 * units an operator writes (seconds, bytes, snake_case); `compile.ts` turns them into the runtime shape
 * whose names carry the unit (`headerReadTimeoutMs`, `maxBodyBytes`).
 *
 * Every object is strict: an unknown key is an error naming its path, so a
 * typo (`max_body_szie`) can never silently leave a limit at its default.
 */
import { z } from 'zod';
import { CLOUDFLARE_API_BASE, ORIGIN_CA_DEFAULT_VALIDITY_DAYS, ORIGIN_CA_VALIDITY_DAYS } from '../tls/issuance/cloudflare-api.js';

const port = z.number().int().min(1).max(65535);
const seconds = z
  .number()
  .positive()
  .max(86400 * 365);
const count = (max: number) => z.number().int().min(1).max(max);
const bytes = (max: number) => z.number().int().min(1).max(max);
/** "512M", "2G", "64K" or a plain number of bytes. */
const sizeString = z.union([
  z.number().int().min(1),
  z.string().regex(/^[1-9][0-9]*[KMGT]?$/, 'expected a size such as "512M" (K, M, G or T)'),
]);
/** IPv4 or IPv6 CIDR, or a bare address; checked precisely in compile.ts. */
const cidr = z.string().min(1).max(64);
const nonEmpty = z.string().min(1);

/** "127.0.0.1:8080" or "[::1]:8080": checked precisely in listen.ts. */
const listenAddress = z.string().min(1).max(64);

const server = z
  .strictObject({
    /** Address the HTTP and HTTPS listeners bind: an IPv4 or IPv6 address ("0.0.0.0": every IPv4 interface). */
    bind_address: nonEmpty.default('127.0.0.1'),
    /** Port of the plain-HTTP listener. */
    http_port: port.default(8080),
    /** Port of the HTTPS listener (HTTP/2 or HTTP/1.1 by ALPN), listened on only when [ssl] gives certificates. */
    https_port: port.default(8443),
    /** Where plain HTTP is served: "address:port" entries; when present, replaces bind_address + http_port. */
    listen: z.array(listenAddress).min(1).max(64).optional(),
    /** Where HTTPS is served ([ssl] required): when present, replaces bind_address + https_port. */
    listen_tls: z.array(listenAddress).min(1).max(64).optional(),
    /** Files of [[vhosts]] tables (globs), relative to this file; read by include.ts before validation. */
    include: z.array(nonEmpty).max(64).optional(),
    /** Worker processes; 0: one per CPU. */
    workers: z.number().int().min(0).max(256).default(0),
    /** The running master's pid, by which the CLI finds it. Absent or a pid file: anything else there is refused. */
    pid_file: nonEmpty.default('/run/miwidothttp.pid'),
    /** Unix socket the CLI talks to; default: pid_file with ".sock" for ".pid". */
    control_socket: nonEmpty.optional(),
    /** Seconds a stop (or the old generation, at a reload) has to finish the requests in flight; then its connections are cut. */
    shutdown_timeout: seconds.default(30),
    /** A worker that has not reported ready by then is killed. */
    worker_ready_timeout: seconds.default(10),
    /** Where master and worker logs go; default stdout. A regular file, not a link, in a directory only root writes; reopened on SIGUSR1. */
    log_file: nonEmpty.optional(),
    /** Least level of the master's and workers' log lines. */
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    /** One log line per request (nginx's access_log) in the main log; default: on when access_log_file is set, else off. */
    access_log: z.boolean().optional(),
    /** The access log as a file of its own, 0640, created by the master and reopened on SIGUSR1 (docs/serving.md). */
    access_log_file: nonEmpty.optional(),
    /** "combined": nginx's and Apache's combined format (goaccess, log shippers); "json": one JSON object a line. */
    access_log_format: z.enum(['combined', 'json']).optional(),
    /** Keep query strings in the access log (they carry tokens as often as search terms). */
    access_log_query: z.boolean().default(false),
    /** The master's state (bans.json), owned by root; certificates go to ssl.cert_dir. */
    state_dir: z.string().startsWith('/', 'must be an absolute path').default('/var/lib/miwidothttp'),
    /** Prometheus metrics, aggregated over all workers, served by the master. */
    metrics: z
      .strictObject({
        /** Serve Prometheus metrics (GET /metrics), totalled over all workers. */
        enabled: z.boolean().default(false),
        /** Address of the metrics listener: loopback by default (scrape it locally). */
        bind_address: nonEmpty.default('127.0.0.1'),
        /** Port of the metrics listener; must differ from http_port. */
        port: port.default(9145),
      })
      .prefault({}),
    /**
     * The security dashboard (off by default): one page and its JSON, served by the
     * workers on a listener of its own, with data the master collects.
     */
    dashboard: z
      .strictObject({
        /** Serve the security dashboard (docs/dashboard.md) on a listener of its own. */
        enabled: z.boolean().default(false),
        /** "address:port" ("[::1]:9146" for IPv6). Loopback by default: open it through an SSH tunnel. */
        listen: nonEmpty.default('127.0.0.1:9146'),
        /** Required when enabled: a Bearer token of 32 bytes or more, best from the environment ("${DASHBOARD_TOKEN}"). */
        token: z.string().optional(),
      })
      .prefault({}),
    http3: z
      .strictObject({
        /** HTTP/3 is not implemented in this version (docs/http3.md): true is refused. */
        enabled: z.boolean().default(false),
        /** Reserved for HTTP/3, not implemented: a value other than the default is refused. So are the keys below. */
        port: port.default(443),
        /** Reserved for HTTP/3 (bbr, cubic or reno). */
        congestion_control: z.enum(['bbr', 'cubic', 'reno']).default('bbr'),
        /** Reserved for HTTP/3 (milliseconds). */
        max_idle_timeout: z.number().int().min(1).default(30000),
        /** Reserved for HTTP/3 (bytes). */
        initial_max_data: z.number().int().min(1).default(10485760),
        /** Reserved for HTTP/3 (bytes). */
        initial_max_stream_data: z.number().int().min(1).default(1048576),
      })
      .prefault({}),
  })
  .prefault({});

const manualCertificate = z.strictObject({
  /** The certificate for this name, PEM: the leaf, optionally followed by its intermediates. */
  cert_file: nonEmpty,
  /** Its private key, PEM; readable by the master only (0600): readable by others is refused. */
  key_file: nonEmpty,
  /** Intermediates, PEM, sent after cert_file's. */
  chain_file: nonEmpty.optional(),
});

const challengeType = z.enum(['http-01', 'tls-alpn-01', 'dns-01']);

const ssl = z.strictObject({
  /**
   * Who provides certificates for the names without a manual one: "acme" (Let's Encrypt or another
   * ACME CA), "cloudflare" (Origin CA), or "manual" (only [ssl.domains."name"]).
   */
  provider: z.enum(['acme', 'cloudflare', 'manual']).optional(),
  /** Cloudflare Origin CA: an API token with the "SSL and Certificates: Edit" permission; put "${VAR}" here, not the token. */
  api_token: nonEmpty.optional(),
  /** dns_01_provider = "cloudflare": the zone's id (else it is found by walking up the name). */
  zone_id: nonEmpty.optional(),
  /** Renew provider certificates before they expire; false: obtain once, never renew. */
  auto_renew: z.boolean().default(true),
  /** Days before expiry a renewal starts (or a third of the lifetime, when that is sooner). */
  renewal_days_before: z.number().int().min(1).max(89).default(30),
  /** The ACME CA's directory (https, RFC 8555 §6.1); the default is Let's Encrypt's production one. */
  acme_server: z.url().default('https://acme-v02.api.letsencrypt.org/directory'),
  /** Contact of the ACME account (expiry notices). */
  email: z.email().optional(),
  /** Agree to the ACME CA's terms of service: without it no account is made. */
  agree_tos: z.boolean().default(false),
  /**
   * Root-only (0700) directory of the ACME account and the issued certificates and keys; made when
   * missing, refused when others may enter it.
   */
  cert_dir: z.string().startsWith('/', 'must be an absolute path').default('/var/lib/miwidothttp/certs'),
  /** Key of each certificate obtained from a provider. */
  key_type: z.enum(['ecdsa', 'rsa']).default('ecdsa'),
  /** Cloudflare's API (Origin CA and the DNS-01 provider). */
  cloudflare_api_url: z.url().default(CLOUDFLARE_API_BASE),
  /** Days an Origin CA certificate is valid (Cloudflare's choices); a year, not the API's 15, so the key changes yearly. */
  requested_validity: z
    .union(ORIGIN_CA_VALIDITY_DAYS.map((days) => z.literal(days)) as [z.ZodLiteral<number>, ...z.ZodLiteral<number>[]])
    .default(ORIGIN_CA_DEFAULT_VALIDITY_DAYS),
  /** Either the names to obtain from `provider`, or manual certificates by name. */
  domains: z.union([z.array(nonEmpty), z.record(nonEmpty, manualCertificate)]).optional(),
  challenges: z
    .strictObject({
      /** Which challenge to answer, first offered first; wildcards always take dns-01. */
      preferred: z.array(challengeType).min(1).default(['http-01', 'tls-alpn-01', 'dns-01']),
      /** Where the CA's HTTP-01 requests arrive: the HTTP listener, so default server.http_port (80 behind a port forward is the operator's to say). */
      http_01_port: port.optional(),
      /**
       * Where HTTP-01 answers live (RFC 8555 §8.3: /.well-known/acme-challenge). With manual
       * certificates, files under it are served over HTTP, not redirected (a certbot webroot).
       */
      http_01_path: z
        .string()
        .regex(/^(\/[^/]+)+\/?$/, 'an absolute path below "/", such as "/.well-known/acme-challenge"')
        .default('/.well-known/acme-challenge'),
      /** DNS-01 through "cloudflare" or "exec" (a program of yours); route53 and gcloud are refused (not implemented). */
      dns_01_provider: z.enum(['cloudflare', 'exec', 'route53', 'gcloud']).optional(),
      /** cloudflare: its API token ("${CF_DNS_TOKEN}"); exec: passed to the program as MIWIDOTHTTP_DNS_CREDENTIALS. */
      dns_01_credentials: nonEmpty.optional(),
      /** dns_01_provider = "exec": run as `command present|cleanup <fqdn>. <value>` (lego's convention). */
      dns_01_command: z.string().startsWith('/', 'must be an absolute path').optional(),
      /** Seconds between publishing the TXT record and asking the CA to look (DNS propagation). */
      dns_01_propagation_delay: z.number().min(0).max(3600).default(10),
      /** Where TLS-ALPN-01 handshakes arrive: the HTTPS listener, so default server.https_port. */
      tls_alpn_01_port: port.optional(),
    })
    .prefault({}),
});

const limits = z
  .strictObject({
    /** Bytes of a request head, request line and headers: 431 past it (414 when the request line alone is). */
    max_header_size: bytes(1 << 20).default(8192),
    /** Header fields of a request: 431 past it. */
    max_headers: count(10000).default(100),
    /** Bytes of one header name: 431 past it. */
    max_header_name_len: count(65536).default(256),
    /** Bytes of one header value: 431 past it. */
    max_header_value_len: count(1 << 20).default(4096),
    /** Bytes of a request body: 413, before reading when Content-Length says so, else as it streams. */
    max_body_size: bytes(2 ** 40).default(104857600),
    /** Bytes of a multipart/form-data body (uploads), in place of max_body_size. */
    max_multipart_size: bytes(2 ** 40).default(524288000),
    /** Nesting depth of a JSON body, counted as it streams: 400 past it. */
    max_json_depth: count(10000).default(64),
    /** Fields of an urlencoded body, or parts of a multipart one: 413 past it. */
    max_form_fields: count(1000000).default(1000),
    /** Bytes of the request-target: 414 past it. */
    max_url_length: count(1 << 20).default(8192),
    /** Open connections of the whole server; more are closed at accept, unread. */
    max_connections: count(10000000).default(100000),
    /**
     * Open connections of one client, server-wide; more are closed at accept. Default 100; also
     * spelled security.timeouts.max_connections_per_ip (set one).
     */
    max_connections_per_ip: count(10000000).optional(),
    /** HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
    max_concurrent_streams: count(10000).default(100),
  })
  .prefault({});

const timeouts = z
  .strictObject({
    /** Seconds to receive a request head (and to finish a TLS handshake): 408 after. Default 10. */
    header_read_timeout: seconds.optional(),
    /** Same as header_read_timeout (config/production.toml spells it so); set one. */
    header_timeout: seconds.optional(),
    /** Seconds to receive a request body: 408 after. Default 30. */
    body_read_timeout: seconds.optional(),
    /** Same as body_read_timeout (config/production.toml spells it so); set one. */
    body_timeout: seconds.optional(),
    /** Seconds an answer may stand still for a client that does not read (slow read); then the connection is cut. */
    write_timeout: seconds.default(30),
    /** Longest a connection may carry no bytes at all. */
    idle_timeout: seconds.default(60),
    /** Longest wait for the next request on a kept-alive connection; default idle_timeout. */
    keepalive_timeout: seconds.optional(),
    /** Seconds for a whole request, head and body: 408 after. */
    request_timeout: seconds.default(120),
    /** Bytes per second a client must sustain once past the first second (slowloris). */
    min_data_rate: z.number().int().min(0).default(100),
    /** Same as security.limits.max_connections_per_ip (both places are in use); set one. */
    max_connections_per_ip: count(10000000).optional(),
    /** New connections per second from one client, sustained. */
    connection_rate_per_ip: count(10000000).default(10),
    /**
     * New connections one client may open at once before the rate applies
     * (a token bucket of this size, refilled at connection_rate_per_ip);
     * default the larger of 2 x the rate and 64, so a browser opening
     * several tabs or `wrk -c50` (51 connections: one probe first) is not
     * taken for an attack.
     */
    connection_burst_per_ip: count(10000000).optional(),
  })
  .prefault({});

/**
 * [security.anti_smuggling]. The switches are defences every request gets;
 * turning one off is refused (compile.ts says why), so each is `true` or
 * absent. What each does is said beside it.
 */
const antiSmuggling = z
  .strictObject({
    /** Node's strict parser (llhttp, never insecureHTTPParser): obs-fold, bare CR/LF, bad chunk framing, a version other than 1.x in text form refused. */
    strict_http_parsing: z.boolean().default(true),
    /** A header name that is not a token, a value with a control character: 400. */
    reject_invalid_headers: z.boolean().default(true),
    /** Names lower-cased, values trimmed, re-serialised upstream; a field that may appear once (Content-Type, Authorization, User-Agent, ...) sent twice: 400, not Node's silent first-wins. */
    normalize_headers: z.boolean().default(true),
    /** Content-Length with Transfer-Encoding, Transfer-Encoding on HTTP/1.0 or in HTTP/2, a coding other than "chunked": 400/501 and the connection closed. */
    reject_ambiguous_requests: z.boolean().default(true),
    /** RFC 9112 §6.3: where a message carries both (an upstream's response), Transfer-Encoding frames it and Content-Length is dropped. */
    prefer_transfer_encoding: z.boolean().default(true),
    /** Requests one connection may carry; the last answer says Connection: close, and nothing pipelined after it is processed. */
    max_request_per_connection: count(10000000).default(1000),
    /** true: one request per connection (every answer says Connection: close; HTTP/2 sends GOAWAY after the first stream). */
    force_connection_close: z.boolean().default(false),
    /** Content-Length must be 1-15 digits and match the body received; repeated values refused. */
    validate_content_length: z.boolean().default(true),
    /** Bytes of one chunk of a chunked body, measured as it streams: 413 past it. */
    max_chunk_size: bytes(2 ** 40).default(8192),
    /** The request-target holds no character a browser would have percent-encoded: controls, space, non-ASCII; " < > anywhere; backslash, ` { } in the path. 400. */
    reject_invalid_characters: z.boolean().default(true),
  })
  .prefault({});

const proxyProtocol = z
  .strictObject({
    /** Read a PROXY protocol v1 or v2 header (haproxy, AWS NLB) before HTTP; the source it names is the client. */
    enabled: z.boolean().default(false),
    /** A connection without a header is closed (needs enabled). */
    required: z.boolean().default(false),
    /** Who may send a header (CIDRs); one from anyone else closes the connection. */
    trusted_proxies: z.array(cidr).default([]),
  })
  .prefault({});

const forwarded = z
  .strictObject({
    /** Take the client's address from client_ip_headers when the peer is one of trusted_proxies. */
    trust_proxy: z.boolean().default(false),
    /** CIDRs, or "cloudflare": its published ranges, from which its CF-Connecting-IP is believed too. */
    trusted_proxies: z.array(cidr).default(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']),
    /** X-Forwarded-For and Forwarded entries walked from the right, at most; 0: lists are never believed. */
    trusted_hops: z.number().int().min(0).max(64).default(2),
    /**
     * Headers a trusted proxy names the client in, first found wins. No
     * header only a CDN sets (CF-Connecting-IP, True-Client-IP): from any
     * other proxy it is the client's own word. Name the CDN in
     * trusted_proxies instead.
     */
    client_ip_headers: z.array(nonEmpty).default(['X-Forwarded-For', 'X-Real-IP', 'Forwarded']),
    /** Refuse (403) a client whose address is not public (loopback, LAN, link-local): for a server behind a CDN only. */
    reject_private_ip: z.boolean().default(false),
    /** A trusted proxy that names no client is refused (400). */
    require_proxy_headers: z.boolean().default(false),
  })
  .prefault({});

const rateLimiting = z
  .strictObject({
    /**
     * Requests per client IP, for the whole server: a token bucket held by the master; 429 with Retry-
     * After when it is empty. Breaches count towards a ban.
     */
    enabled: z.boolean().default(false),
    /** Tokens a client's bucket gains per second. */
    requests_per_second: count(10000000).default(100),
    /** Tokens a client's bucket holds: requests it may make at once. */
    burst_size: count(10000000).default(200),
  })
  .prefault({});

const ddos = z
  .strictObject({
    /** Addresses and CIDRs never limited nor banned. */
    whitelist: z.array(cidr).default([]),
    /** Addresses and CIDRs closed at accept, before a byte is read (403 when a trusted proxy names one). */
    blacklist: z.array(cidr).default([]),
    /** Seconds a ban lasts (limits, the IDS, or `miwidothttp ban add` without --seconds). */
    ban_seconds: z
      .number()
      .int()
      .min(1)
      .max(86400 * 365)
      .default(300),
    /** Limit breaches (429s, refused connections) by one client within breach_window that ban it; 0: never. */
    ban_after_breaches: z.number().int().min(0).max(10000000).default(100),
    /** Seconds over which breaches are counted towards ban_after_breaches. */
    breach_window: seconds.default(60),
    /**
     * Never banned, whatever their breaches or IDS score (fail2ban's
     * ignoreip): CIDRs, "loopback" (127.0.0.0/8, ::1) and "self" (every
     * address of this host's interfaces). A ban of the server's own address
     * would lock out the operator, a local reverse proxy that is every
     * client, and health checks. `[]` makes them bannable. Limits still apply
     * (429); an admin's `ban add` is not refused.
     */
    ignore_ip: z.array(cidr).default(['loopback', 'self']),
    /** Clients whose counters the master keeps at most; the least recently seen are forgotten first. */
    max_tracked_clients: z.number().int().min(1000).max(10000000).default(100000),
    /** Bans in force at most; past it new bans are refused (and audited once, ban.table_full) until some expire. */
    max_bans: count(10000000).default(100000),
  })
  .prefault({});

const idsRule = z.strictObject({
  /** Names the rule in audit events and on the dashboard. */
  name: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits and _ . : - only (at most 64)'),
  /** A regular expression, matched case-insensitively against the decoded path, each query parameter, every header and text bodies. */
  pattern: nonEmpty,
  /** What a match adds to the client's IDS score. */
  severity: z.enum(['low', 'medium', 'high', 'critical']).default('medium'),
  /** log: audit and score the match; block: also refuse the request (403). */
  action: z.enum(['log', 'block']).default('log'),
});

const ids = z
  .strictObject({
    /** Intrusion detection over every request: SQL injection, XSS, path traversal, command injection, and rules (docs/ids.md). */
    enabled: z.boolean().default(false),
    /** A client's IDS score (it halves every five minutes) that writes an ids.alert audit event. */
    alert_threshold: count(1000000).default(5),
    /** A client's IDS score that bans it for ban_seconds. */
    block_threshold: count(1000000).default(20),
    /** Rules of your own, beside the built-in detectors. */
    rules: z.array(idsRule).default([]),
  })
  .prefault({});

/** [security.headers] keys; a vhost's [vhosts.headers] may set any of them over the server's. */
const headerFields = {
  /** Strict-Transport-Security on HTTPS answers (never over plain HTTP, RFC 6797 §7.2). */
  hsts_enabled: z.boolean(),
  /** Its max-age, in seconds. */
  hsts_max_age: z.number().int().min(0),
  /** Its includeSubDomains. */
  hsts_include_subdomains: z.boolean(),
  /** Its preload: opt-in, as browsers' preload lists are hard to leave (hstspreload.org). */
  hsts_preload: z.boolean(),
  /** X-Frame-Options; "" leaves it out. */
  frame_options: z.enum(['DENY', 'SAMEORIGIN', '']),
  /** X-Content-Type-Options; "" leaves it out. */
  content_type_options: z.enum(['nosniff', '']),
  /** X-XSS-Protection; "" leaves it out. */
  xss_protection: z.string(),
  /** Referrer-Policy; "" leaves it out. */
  referrer_policy: z.string(),
  /** Permissions-Policy; "" leaves it out. */
  permissions_policy: z.string(),
  /** Send a Content-Security-Policy. */
  csp_enabled: z.boolean(),
  /** Send it as Content-Security-Policy-Report-Only: violations are reported, not blocked. */
  csp_report_only: z.boolean(),
  /** The policy's directives. */
  csp_directives: z.string(),
  /** Extra response headers; an empty value removes the header. */
  custom: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a header name'), z.string()),
};

const headers = z
  .strictObject({
    hsts_enabled: headerFields.hsts_enabled.default(true),
    hsts_max_age: headerFields.hsts_max_age.default(31536000),
    hsts_include_subdomains: headerFields.hsts_include_subdomains.default(true),
    /** Opt-in: "preload" asks browsers' built-in lists to pin HTTPS for the domain and every subdomain, hard to undo (hstspreload.org). */
    hsts_preload: headerFields.hsts_preload.default(false),
    frame_options: headerFields.frame_options.default('DENY'),
    content_type_options: headerFields.content_type_options.default('nosniff'),
    /**
     * "0" turns off the XSS filter of browsers that still have one (OWASP
     * Secure Headers, MDN): its "block" mode could be driven to leak or cut
     * pages, and current browsers have none. Sent rather than omitted, so an
     * old browser's filter is off too. "" omits the header.
     */
    xss_protection: headerFields.xss_protection.default('0'),
    referrer_policy: headerFields.referrer_policy.default('strict-origin-when-cross-origin'),
    permissions_policy: headerFields.permissions_policy.default('geolocation=(), microphone=(), camera=()'),
    csp_enabled: headerFields.csp_enabled.default(true),
    csp_report_only: headerFields.csp_report_only.default(false),
    csp_directives: headerFields.csp_directives.default(
      "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'",
    ),
    custom: headerFields.custom.default({}),
  })
  .prefault({});

/** A vhost's overrides: only the keys it sets; `custom` adds to (or, with "", removes from) the server's. */
const vhostHeaders = z.strictObject(headerFields).partial();

const audit = z
  .strictObject({
    /** Write audit events: rejections and other security events, logins, access refusals, configuration changes, admin actions. */
    enabled: z.boolean().default(true),
    /** Least level of the audit events written: security, login and access events are warn, configuration and admin ones info. */
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    /**
     * Where audit events go, written by the master alone; default the main log. A regular file, not a
     * link, in a directory only root writes; reopened on SIGUSR1.
     */
    log_file: nonEmpty.optional(),
    /** Write logins to the dashboard (auth.* events). */
    log_authentication: z.boolean().default(true),
    /** Write clients refused for who they are: blacklisted or banned (and access.* events). */
    log_authorization: z.boolean().default(true),
    /** Write reloads, refused reloads and certificate changes. */
    log_configuration_changes: z.boolean().default(true),
    /** Write rejections, refused connections, IDS matches and bans. */
    log_security_events: z.boolean().default(true),
    /** Write what an admin did: reload, stop, ban add and remove. */
    log_admin_actions: z.boolean().default(true),
    /** json, or text (one line per event; needs log_file). */
    format: z.enum(['json', 'text']).default('json'),
    /** Request bodies in the audit log: not implemented, true is refused. */
    include_request_body: z.boolean().default(false),
    /** Response bodies in the audit log: not implemented, true is refused. */
    include_response_body: z.boolean().default(false),
    /** Request headers copied into request events; Authorization, Proxy-Authorization, Cookie and Set-Cookie never are. */
    include_headers: z.array(nonEmpty).default(['User-Agent', 'Referer']),
    /** Headers never copied, whatever include_headers says. */
    exclude_headers: z.array(nonEmpty).default(['Authorization', 'Cookie']),
  })
  .prefault({});

const security = z
  .strictObject({
    /**
     * Redirect plain-HTTP requests to HTTPS (301; 308 for methods other than GET and HEAD), except
     * ACME HTTP-01 challenges. Needs [ssl].
     */
    enforce_https: z.boolean().default(false),
    /** Oldest TLS version offered. */
    min_tls_version: z.enum(['1.2', '1.3']).default('1.2'),
    /** TLS 1.2 cipher suites (IANA or OpenSSL names), ECDHE with AEAD only; default Mozilla's intermediate list. */
    ciphers: z.array(nonEmpty).optional(),
    limits,
    timeouts,
    anti_smuggling: antiSmuggling,
    proxy_protocol: proxyProtocol,
    forwarded,
    rate_limiting: rateLimiting,
    ddos,
    ids,
    headers,
    audit,
  })
  .prefault({});

const isolation = z
  .strictObject({
    /**
     * Unset (the default): every worker runs as a uid of its own from
     * worker_uid_base on, in run_as_group. Set: every worker runs as exactly
     * this user (one uid they all share), which must exist and not be root.
     * The master must be root either way.
     */
    run_as_user: nonEmpty.optional(),
    /** Default: run_as_user's primary group, else the group of the "miwidothttp" system user (created when missing). */
    run_as_group: nonEmpty.optional(),
    /** First of the 65536 uids given one per worker when run_as_user is unset; no account may use them. */
    worker_uid_base: z
      .number()
      .int()
      .min(1000)
      .max(2 ** 32 - 2 - 65536)
      .default(2_000_000_000),
    /** The worker's jail: its root directory. Static roots must lie inside. */
    chroot: z.string().startsWith('/', 'must be an absolute path').optional(),
    /** Working directory of the workers, inside the jail (needs chroot). */
    working_dir: z.string().startsWith('/', 'must be an absolute path').default('/'),
    /** cgroup memory limit per worker; V8's heap is sized from it too. */
    max_memory: sizeString.default('512M'),
    /** cgroup CPU quota per worker, in percent of one CPU. */
    max_cpu_percent: z
      .number()
      .positive()
      .max(100 * 1024)
      .optional(),
    /** RLIMIT_NOFILE of each worker: its connections, files and pipes. */
    max_open_files: z
      .number()
      .int()
      .min(64)
      .max(1 << 20)
      .default(10000),
    /** cgroup pids limit per worker (threads count). */
    max_pids: z
      .number()
      .int()
      .min(16)
      .max(1 << 22)
      .default(512),
    /** cgroup I/O weight per worker, where the kernel offers it (1-10000). */
    io_weight: z.number().int().min(1).max(10000).optional(),
    /** Seconds a worker may stay above max_memory or max_cpu_percent before it is replaced. */
    resource_grace_period: seconds.default(10),
    /** A seccomp allowlist of system calls in every worker (native-helpers/SECURITY.md). */
    enable_seccomp: z.boolean().default(true),
    /** What a call outside the list gets: kill (the worker) or errno (EPERM). */
    seccomp_default_action: z.enum(['errno', 'kill']).default('kill'),
    /** Replaces the built-in, measured allowlist. */
    allowed_syscalls: z
      .array(z.string().regex(/^[a-z0-9_]+$/, 'a syscall name'))
      .min(1)
      .optional(),
    /** Confine workers with an AppArmor profile; refused where AppArmor is off. */
    enable_apparmor: z.boolean().default(false),
    /** The AppArmor profile (config/apparmor/ ships one). */
    apparmor_profile: nonEmpty.default('miwidothttp-worker'),
    /** A cgroup of its own for every worker, for max_memory, max_cpu_percent, max_pids and io_weight. */
    enable_cgroups: z.boolean().default(true),
    /** Where worker cgroups go, a relative path; default the cgroup systemd delegated to the service, else miwidothttp.slice. */
    cgroup_parent: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'a relative cgroup path such as "miwidothttp.slice"')
      .refine((value) => !value.split('/').includes('..'), 'must not contain ".."')
      .optional(),
  })
  .prefault({});

/** "http://...", "https://..." or "unix:/absolute/path.sock"; checked precisely in compile-backend.ts. */
const upstreamUrl = z
  .string()
  .max(2048)
  .refine((value) => /^https?:\/\//i.test(value) || value.startsWith('unix:/'), 'expected an http://, https:// or unix:/path target');

const proxyTarget = z.strictObject({
  /** An upstream: http(s)://host[:port][/path prefix] or unix:/path.sock, without query or credentials. */
  url: upstreamUrl,
  /** Its share of requests under round_robin. */
  weight: count(1000).default(1),
});

/**
 * Active health checks: a GET of `path` on every target each `interval`
 * seconds; `fails` failures in a row take a target out, `passes` successes
 * in a row bring it back (nginx Plus health_check, HAProxy check).
 */
const healthCheck = z.strictObject({
  /** The path asked with GET; any 2xx or 3xx answer is a pass. */
  path: z
    .string()
    .regex(/^\/[^\s#]*$/, 'an absolute path such as "/healthz"')
    .default('/'),
  /** Seconds between probes of each target. */
  interval: seconds.default(5),
  /** Seconds a probe may take before it counts as a failure. */
  timeout: seconds.default(2),
  /** Failures in a row that take a target out. */
  fails: count(1000).default(3),
  /** Passes in a row that bring a target back. */
  passes: count(1000).default(2),
});

/**
 * A proxy backend: [vhosts.backend] and [vhosts.routes.backend] alike. The
 * upstream options (TLS, HTTP/2, health checks, WebSocket) belong to it, so
 * every place that proxies has them.
 */
const proxyBackend = z.strictObject({
  /** proxy: a reverse proxy to target or targets. */
  type: z.literal('proxy'),
  /** The upstream, http(s)://host[:port][/path prefix] or unix:/path.sock; or targets, for several. */
  target: upstreamUrl.optional(),
  /** Several upstreams, balanced; a target that fails max_fails times is taken out for fail_timeout. */
  targets: z.array(proxyTarget).min(1).max(256).optional(),
  /** round_robin (by weight) or least_connections. */
  load_balancing: z.enum(['round_robin', 'least_connections']).default('round_robin'),
  /** Seconds to establish the upstream connection. */
  connect_timeout: seconds.default(5),
  /** Seconds to wait for the upstream's response headers, and between body chunks: 504 after. */
  timeout: seconds.default(60),
  /** Failures within fail_timeout that take a target out for fail_timeout (nginx max_fails). */
  max_fails: z.number().int().min(0).max(1000).default(1),
  /** Seconds a failed target is taken out, and the window max_fails counts in. */
  fail_timeout: seconds.default(10),
  /** Pass the client's Host upstream (Caddy) rather than the target's (nginx). */
  preserve_host: z.boolean().default(true),
  /** Reuse upstream connections (closed after 4 s idle); false: one connection per request. */
  keepalive: z.boolean().default(true),
  /** Proxy WebSocket upgrades (RFC 6455, RFC 8441); false: an upgrade is refused with 403. */
  websocket: z.boolean().default(true),
  /** "h2": HTTP/2 to the upstream (h2c for http:// and unix: targets, ALPN over TLS), with trailers: gRPC. */
  protocol: z.enum(['http/1.1', 'h2']).default('http/1.1'),
  /** https:// targets: the CAs that sign the upstream's certificate (PEM); default: the system's. */
  ca_file: nonEmpty.optional(),
  /** https:// targets: a client certificate (PEM) and its key, for upstreams that require one (mTLS). */
  client_cert_file: nonEmpty.optional(),
  /** The key of client_cert_file (PEM); read by the master, never by a worker. */
  client_key_file: nonEmpty.optional(),
  /** https:// targets: the SNI name and the name the certificate must carry; default: the target's host. */
  server_name: nonEmpty.optional(),
  /** https:// targets: verify the upstream's certificate. false accepts any certificate: see docs/proxy.md. */
  verify: z.boolean().default(true),
  /** Active health checks of every target (passive marking by max_fails is always on). */
  health_check: healthCheck.optional(),
});

/**
 * [vhosts.compression] and a route's: only the keys set; the rest comes from
 * the vhost, then from these defaults (compile.ts): on, br > zstd > gzip,
 * text types of at least 1 KiB, no precompressed siblings.
 */
const compression = z
  .strictObject({
    /** Compress text responses (default on); false for a route whose pages reflect secrets (BREACH). */
    enabled: z.boolean(),
    /** The server's preference; the client's Accept-Encoding q-values come first. */
    algorithms: z
      .array(z.enum(['br', 'zstd', 'gzip']))
      .min(1)
      .refine((list) => new Set(list).size === list.length, 'each algorithm once'),
    /** Serve file.br / file.zst / file.gz beside a file when present and not older than it. */
    precompressed: z.boolean(),
    /** Bytes below which a response is sent as it is (a known Content-Length only). */
    min_length: z
      .number()
      .int()
      .min(0)
      .max(2 ** 40),
  })
  .partial()
  .optional();

const backend = z.discriminatedUnion('type', [
  z.strictObject({
    /** static: files from the vhost's root (also without [vhosts.backend]). */
    type: z.literal('static'),
  }),
  proxyBackend,
  z.strictObject({
    /** redirect: every request is answered with a redirect to target. */
    type: z.literal('redirect'),
    /** Where to: scheme, host and an optional path prefix. */
    target: z.url({ protocol: /^https?$/ }),
    /** The redirect's status code. */
    status: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)]).default(301),
    /** Append the request's path and query to target. */
    preserve_path: z.boolean().default(true),
  }),
]);

const domainName = z
  .string()
  .regex(
    /^(\*|(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*)$/i,
    'expected a host name, "*.name" or "*"',
  );

/** What a vhost and each of its routes may set (docs/serving.md); a route's unset keys come from its vhost. */
const siteFields = {
  /** Directory served, a host path: inside process.isolation.chroot when set, and readable by the workers (check says otherwise). */
  root: z.string().startsWith('/', 'must be an absolute path').optional(),
  /** nginx try_files: "$uri" (a file), "$uri/" (a directory with an index), "/fallback.html"; the first that exists answers, else 404. */
  try_files: z.array(z.string().min(1).max(256)).min(1).max(16).optional(),
  /** Status -> a page below root, served with that status: { 404 = "/404.html" } (4xx and 5xx only). */
  error_pages: z
    .record(
      z.string().regex(/^[45][0-9][0-9]$/, 'a 4xx or 5xx status'),
      z.string().regex(/^\/[^?#]*$/, 'a path below root, such as "/404.html"'),
    )
    .optional(),
  backend: backend.optional(),
  /** Basic authentication (RFC 7617) against bcrypt lines of an htpasswd file; false: none (a route under a vhost that has it). */
  auth: z
    .union([
      z.strictObject({
        htpasswd: nonEmpty,
        realm: z
          .string()
          .regex(/^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/, 'printable ASCII without " or \\ (at most 64)')
          .default('Restricted'),
      }),
      z.literal(false),
    ])
    .optional(),
  /** Client addresses (as the client-ip stage resolved them): deny first, then, when allow is not empty, only those. 403. */
  access: z
    .strictObject({
      /** When not empty, only these addresses and networks (CIDR) are served; everyone else gets 403. */
      allow: z.array(cidr).default([]),
      /** Addresses and networks (CIDR) refused with 403, checked before allow. */
      deny: z.array(cidr).default([]),
    })
    .optional(),
  compression,
  headers: vhostHeaders.optional(),
};

const route = z.strictObject({
  /** A path prefix matched at segment boundaries on the decoded path; the longest matching route wins. */
  path: z.string().min(1).max(1024),
  /** Remove the matched prefix before the backend sees the path (nginx alias, Caddy handle_path). */
  strip_prefix: z.boolean().default(false),
  ...siteFields,
});

const vhost = z.strictObject({
  /**
   * Host names this vhost answers: exact, "*.suffix", or "*" (any other, requests by IP address
   * included). The first vhost that matches wins; a name claimed twice is refused.
   */
  domains: z.array(domainName).min(1),
  /** Files served for a directory, the first found. */
  index_files: z.array(z.string().regex(/^[^/\\\0]+$/, 'a file name, not a path')).default(['index.html']),
  /** HTML listing of directories without an index file (off, as in nginx). */
  directory_listing: z.boolean().default(false),
  ...siteFields,
  routes: z.array(route).max(256).default([]),
});

/** Milliseconds of a managed etcd member's Raft timing. */
const raftMs = z.number().int().min(1).max(60_000);
const httpUrl = z.url({ protocol: /^https?$/ });

const cluster = z
  .strictObject({
    /** The table's presence is the intent; `enabled = false` keeps the keys and runs alone. */
    enabled: z.boolean().default(true),
    /** Unique in the cluster, and the commonName of cert_file; default: this host's name. */
    node_name: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/, 'lower-case letters, digits, "." and "-" (at most 63)')
      .optional(),
    /** etcd's client URLs; default with [cluster.etcd] managed: the local member's client_url. */
    etcd_endpoints: z.array(httpUrl).min(1).optional(),
    /** Prefix of this cluster's keys in etcd. */
    key_prefix: z
      .string()
      .regex(/^\/([A-Za-z0-9_.-]+\/)*$/, 'an etcd key prefix such as "/miwidothttp/" (starts and ends with "/")')
      .default('/miwidothttp/'),
    /** The cluster CA (`miwidothttp cluster init`): it signs every node's certificate, and etcd's. */
    ca_file: nonEmpty.default('/etc/miwidothttp/cluster/ca.pem'),
    /** This node's certificate (commonName = node_name): its TLS client identity towards etcd and its identity in the cluster. */
    cert_file: nonEmpty.default('/etc/miwidothttp/cluster/node.pem'),
    /** This node's private key, root-only. */
    key_file: nonEmpty.default('/etc/miwidothttp/cluster/node.key'),
    consensus: z
      .strictObject({
        /** Raft timings of a managed member (none has a default here: unset, etcd's defaults below apply). */
        election_timeout_min: raftMs.optional(),
        /** etcd draws each election timeout below this: 2 x election_timeout_min, or unset. */
        election_timeout_max: raftMs.optional(),
        /** Milliseconds between a managed member's heartbeats (etcd's default 100). */
        heartbeat_interval: raftMs.optional(),
        /** Refused when managed: etcd does not let it be set (it sends up to 1 MiB per message). */
        max_append_entries: z.number().int().min(1).optional(),
        /** etcd members the cluster is built for; quorum_size must be a majority of it. */
        min_cluster_size: z.number().int().min(1).max(99).default(3),
        /** etcd members that must answer for this node to write (with a linearizable read). */
        quorum_size: z.number().int().min(1).max(99).default(2),
        /** A node leaves read-only by itself once the quorum is back (after rejoin_delay); false: `cluster rejoin`. */
        auto_rejoin: z.boolean().default(true),
        /** Seconds of regained quorum before a node leaves read-only (it catches up first). */
        rejoin_delay: z.number().min(0).max(3600).default(30),
        /** Without quorum, a node serves on with its last configuration, but refuses pushes and shared bans. */
        readonly_on_split: z.boolean().default(true),
        /** Nodes the cluster admits at most (admitted, alive or not: `cluster remove` frees a place). */
        max_nodes: z.number().int().min(1).max(1000).default(7),
        /** false: a new node waits for `miwidothttp cluster admit NAME` on a member. */
        allow_auto_join: z.boolean().default(false),
        /** false only for http:// endpoints on loopback (tests). */
        require_tls: z.boolean().default(true),
        /** Put "${CLUSTER_TOKEN}" here, not the token: it keys the join proofs and the ciphertext in etcd. */
        cluster_token: nonEmpty.optional(),
      })
      .prefault({}),
    etcd: z
      .strictObject({
        /** true: the master runs this node's etcd member (Debian's etcd) as run_as_user. */
        managed: z.boolean().default(false),
        /** The local member's client URL (it listens there); default https://127.0.0.1:2379. */
        client_url: httpUrl.optional(),
        /** The local member's peer URL, as the other members reach it; default https://127.0.0.1:2380. */
        peer_url: httpUrl.optional(),
        /** The founding members, "name=peer_url"; default: this node alone. A node not listed joins as a learner. */
        initial_cluster: z
          .array(z.string().regex(/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?=https?:\/\/\S+$/, 'expected "name=https://host:port"'))
          .optional(),
        /** The member's data (owned by run_as_user, every parent traversable by it); default /var/lib/etcd/miwidothttp. */
        data_dir: z.string().startsWith('/', 'must be an absolute path').optional(),
        /** User the managed etcd member runs as. */
        run_as_user: nonEmpty.default('etcd'),
        /** The etcd program of the managed member. */
        etcd_binary: z.string().startsWith('/', 'must be an absolute path').default('/usr/bin/etcd'),
        /**
         * Milliseconds the health loop's linearizable read may take before the
         * quorum counts as lost: about twice the etcd cluster's election
         * timeout. Default: 2 x election_timeout_max when managed, else 1000.
         */
        health_timeout: z.number().int().min(100).max(60_000).optional(),
      })
      .prefault({}),
  })
  .optional();

export const configSchema = z.strictObject({
  server,
  ssl: ssl.optional(),
  security,
  process: z.strictObject({ isolation }).prefault({}),
  cluster,
  vhosts: z.array(vhost).default([]),
});

export type RawConfig = z.infer<typeof configSchema>;
export type RawVhost = z.infer<typeof vhost>;
export type RawBackend = z.infer<typeof backend>;
export type RawProxyBackend = z.infer<typeof proxyBackend>;
export type RawRoute = z.infer<typeof route>;
