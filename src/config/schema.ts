// Over 400 lines: the whole config language, every key beside its default, in the one place defaults live.
/**
 * The TOML config language: every section and key of the spec
 * (shared/spec/security-architecture.md) and of contract.md, with its default.
 *
 * This file is the one place where defaults live. Keys keep the spec's names
 * and units (seconds, bytes); `compile.ts` turns them into the runtime shape
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
    bind_address: nonEmpty.default('127.0.0.1'),
    http_port: port.default(8080),
    https_port: port.default(8443),
    /** Where plain HTTP is served: "address:port" entries; when present, replaces bind_address + http_port. */
    listen: z.array(listenAddress).min(1).max(64).optional(),
    /** Where HTTPS is served ([ssl] required): when present, replaces bind_address + https_port. */
    listen_tls: z.array(listenAddress).min(1).max(64).optional(),
    /** Files of [[vhosts]] tables (globs), relative to this file; read by include.ts before validation. */
    include: z.array(nonEmpty).max(64).optional(),
    workers: z.number().int().min(0).max(256).default(0),
    pid_file: nonEmpty.default('/run/miwidothttp.pid'),
    /** Unix socket the CLI talks to; default: pid_file with ".sock" for ".pid". */
    control_socket: nonEmpty.optional(),
    shutdown_timeout: seconds.default(30),
    /** A worker that has not reported ready by then is killed. */
    worker_ready_timeout: seconds.default(10),
    /** Where master and worker logs go; default stdout. Reopened on SIGUSR1. */
    log_file: nonEmpty.optional(),
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
        enabled: z.boolean().default(false),
        bind_address: nonEmpty.default('127.0.0.1'),
        port: port.default(9145),
      })
      .prefault({}),
    /**
     * The security dashboard (off by default): one page and its JSON, served by the
     * workers on a listener of its own, with data the master collects.
     */
    dashboard: z
      .strictObject({
        enabled: z.boolean().default(false),
        /** "address:port" ("[::1]:9146" for IPv6). Loopback by default: open it through an SSH tunnel. */
        listen: nonEmpty.default('127.0.0.1:9146'),
        /** Required when enabled: a Bearer token of 32 bytes or more, best from the environment ("${DASHBOARD_TOKEN}"). */
        token: z.string().optional(),
      })
      .prefault({}),
    http3: z
      .strictObject({
        enabled: z.boolean().default(false),
        port: port.default(443),
        congestion_control: z.enum(['bbr', 'cubic', 'reno']).default('bbr'),
        max_idle_timeout: z.number().int().min(1).default(30000),
        initial_max_data: z.number().int().min(1).default(10485760),
        initial_max_stream_data: z.number().int().min(1).default(1048576),
      })
      .prefault({}),
  })
  .prefault({});

const manualCertificate = z.strictObject({
  cert_file: nonEmpty,
  key_file: nonEmpty,
  chain_file: nonEmpty.optional(),
});

const challengeType = z.enum(['http-01', 'tls-alpn-01', 'dns-01']);

const ssl = z.strictObject({
  provider: z.enum(['acme', 'cloudflare', 'manual']).optional(),
  /** Cloudflare Origin CA: an API token with the "SSL and Certificates: Edit" permission; put "${VAR}" here, not the token. */
  api_token: nonEmpty.optional(),
  zone_id: nonEmpty.optional(),
  auto_renew: z.boolean().default(true),
  renewal_days_before: z.number().int().min(1).max(89).default(30),
  acme_server: z.url().default('https://acme-v02.api.letsencrypt.org/directory'),
  email: z.email().optional(),
  agree_tos: z.boolean().default(false),
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
      http_01_port: port.default(80),
      http_01_path: z
        .string()
        .regex(/^(\/[^/]+)+\/?$/, 'an absolute path below "/", such as "/.well-known/acme-challenge"')
        .default('/.well-known/acme-challenge'),
      dns_01_provider: z.enum(['cloudflare', 'exec', 'route53', 'gcloud']).optional(),
      dns_01_credentials: nonEmpty.optional(),
      /** dns_01_provider = "exec": run as `command present|cleanup <fqdn>. <value>` (lego's convention). */
      dns_01_command: z.string().startsWith('/', 'must be an absolute path').optional(),
      /** Seconds between publishing the TXT record and asking the CA to look (DNS propagation). */
      dns_01_propagation_delay: z.number().min(0).max(3600).default(10),
      tls_alpn_01_port: port.default(443),
    })
    .prefault({}),
});

const limits = z
  .strictObject({
    max_header_size: bytes(1 << 20).default(8192),
    max_headers: count(10000).default(100),
    max_header_name_len: count(65536).default(256),
    max_header_value_len: count(1 << 20).default(4096),
    max_body_size: bytes(2 ** 40).default(104857600),
    max_multipart_size: bytes(2 ** 40).default(524288000),
    max_json_depth: count(10000).default(64),
    max_form_fields: count(1000000).default(1000),
    max_url_length: count(1 << 20).default(8192),
    max_connections: count(10000000).default(100000),
    max_connections_per_ip: count(10000000).optional(),
    /** HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
    max_concurrent_streams: count(10000).default(100),
  })
  .prefault({});

const timeouts = z
  .strictObject({
    header_read_timeout: seconds.optional(),
    /** Spelling used by the spec's production sample; same meaning. */
    header_timeout: seconds.optional(),
    body_read_timeout: seconds.optional(),
    body_timeout: seconds.optional(),
    write_timeout: seconds.default(30),
    /** Longest a connection may carry no bytes at all. */
    idle_timeout: seconds.default(60),
    /** Longest wait for the next request on a kept-alive connection; default idle_timeout. */
    keepalive_timeout: seconds.optional(),
    request_timeout: seconds.default(120),
    /** Bytes per second a client must sustain once past the first second (slowloris). */
    min_data_rate: z.number().int().min(0).default(100),
    max_connections_per_ip: count(10000000).optional(),
    connection_rate_per_ip: count(10000000).default(10),
  })
  .prefault({});

const antiSmuggling = z
  .strictObject({
    strict_http_parsing: z.boolean().default(true),
    reject_invalid_headers: z.boolean().default(true),
    normalize_headers: z.boolean().default(true),
    reject_ambiguous_requests: z.boolean().default(true),
    prefer_transfer_encoding: z.boolean().default(true),
    max_request_per_connection: count(10000000).default(1000),
    force_connection_close: z.boolean().default(false),
    validate_content_length: z.boolean().default(true),
    max_chunk_size: bytes(2 ** 40).default(8192),
    reject_invalid_characters: z.boolean().default(true),
  })
  .prefault({});

const proxyProtocol = z
  .strictObject({
    enabled: z.boolean().default(false),
    required: z.boolean().default(false),
    trusted_proxies: z.array(cidr).default([]),
  })
  .prefault({});

const forwarded = z
  .strictObject({
    trust_proxy: z.boolean().default(false),
    trusted_proxies: z.array(cidr).default(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']),
    trusted_hops: z.number().int().min(0).max(64).default(2),
    client_ip_headers: z.array(nonEmpty).default(['CF-Connecting-IP', 'X-Real-IP', 'X-Forwarded-For', 'X-Client-IP', 'Forwarded']),
    reject_private_ip: z.boolean().default(false),
    require_proxy_headers: z.boolean().default(false),
  })
  .prefault({});

const rateLimiting = z
  .strictObject({
    enabled: z.boolean().default(false),
    requests_per_second: count(10000000).default(100),
    burst_size: count(10000000).default(200),
  })
  .prefault({});

const ddos = z
  .strictObject({
    whitelist: z.array(cidr).default([]),
    blacklist: z.array(cidr).default([]),
    ban_seconds: z
      .number()
      .int()
      .min(1)
      .max(86400 * 365)
      .default(300),
    /** Limit breaches (429s, refused connections) by one client within breach_window that ban it; 0: never. */
    ban_after_breaches: z.number().int().min(0).max(10000000).default(100),
    breach_window: seconds.default(60),
    /** Clients whose counters the master keeps at most; the least recently seen are forgotten first. */
    max_tracked_clients: z.number().int().min(1000).max(10000000).default(100000),
    /** Bans in force at most; past it new bans are refused (and audited once, ban.table_full) until some expire. */
    max_bans: count(10000000).default(100000),
  })
  .prefault({});

const idsRule = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits and _ . : - only (at most 64)'),
  pattern: nonEmpty,
  severity: z.enum(['low', 'medium', 'high', 'critical']).default('medium'),
  action: z.enum(['log', 'block']).default('log'),
});

const ids = z
  .strictObject({
    enabled: z.boolean().default(false),
    alert_threshold: count(1000000).default(5),
    block_threshold: count(1000000).default(20),
    rules: z.array(idsRule).default([]),
  })
  .prefault({});

/** [security.headers] keys; a vhost's [vhosts.headers] may set any of them over the server's. */
const headerFields = {
  hsts_enabled: z.boolean(),
  hsts_max_age: z.number().int().min(0),
  hsts_include_subdomains: z.boolean(),
  hsts_preload: z.boolean(),
  frame_options: z.enum(['DENY', 'SAMEORIGIN', '']),
  content_type_options: z.enum(['nosniff', '']),
  xss_protection: z.string(),
  referrer_policy: z.string(),
  permissions_policy: z.string(),
  csp_enabled: z.boolean(),
  csp_report_only: z.boolean(),
  csp_directives: z.string(),
  /** Extra response headers; an empty value removes the header. */
  custom: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a header name'), z.string()),
};

const headers = z
  .strictObject({
    hsts_enabled: headerFields.hsts_enabled.default(true),
    hsts_max_age: headerFields.hsts_max_age.default(31536000),
    hsts_include_subdomains: headerFields.hsts_include_subdomains.default(true),
    hsts_preload: headerFields.hsts_preload.default(true),
    frame_options: headerFields.frame_options.default('DENY'),
    content_type_options: headerFields.content_type_options.default('nosniff'),
    xss_protection: headerFields.xss_protection.default('1; mode=block'),
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
    enabled: z.boolean().default(true),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    log_file: nonEmpty.optional(),
    log_authentication: z.boolean().default(true),
    log_authorization: z.boolean().default(true),
    log_configuration_changes: z.boolean().default(true),
    log_security_events: z.boolean().default(true),
    log_admin_actions: z.boolean().default(true),
    format: z.enum(['json', 'text']).default('json'),
    include_request_body: z.boolean().default(false),
    include_response_body: z.boolean().default(false),
    include_headers: z.array(nonEmpty).default(['User-Agent', 'Referer']),
    exclude_headers: z.array(nonEmpty).default(['Authorization', 'Cookie']),
  })
  .prefault({});

const security = z
  .strictObject({
    enforce_https: z.boolean().default(false),
    min_tls_version: z.enum(['1.2', '1.3']).default('1.2'),
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
     * this user (one uid they all share). The master must be root either way.
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
    working_dir: z.string().startsWith('/', 'must be an absolute path').default('/'),
    /** cgroup memory limit per worker; V8's heap is sized from it too. */
    max_memory: sizeString.default('512M'),
    /** cgroup CPU quota per worker, in percent of one CPU. */
    max_cpu_percent: z
      .number()
      .positive()
      .max(100 * 1024)
      .optional(),
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
    enable_seccomp: z.boolean().default(true),
    seccomp_default_action: z.enum(['errno', 'kill']).default('kill'),
    /** Replaces the built-in, measured allowlist. */
    allowed_syscalls: z
      .array(z.string().regex(/^[a-z0-9_]+$/, 'a syscall name'))
      .min(1)
      .optional(),
    enable_apparmor: z.boolean().default(false),
    apparmor_profile: nonEmpty.default('miwidothttp-worker'),
    enable_cgroups: z.boolean().default(true),
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

const proxyTarget = z.strictObject({ url: upstreamUrl, weight: count(1000).default(1) });

/**
 * Active health checks: a GET of `path` on every target each `interval`
 * seconds; `fails` failures in a row take a target out, `passes` successes
 * in a row bring it back (nginx Plus health_check, HAProxy check).
 */
const healthCheck = z.strictObject({
  path: z
    .string()
    .regex(/^\/[^\s#]*$/, 'an absolute path such as "/healthz"')
    .default('/'),
  interval: seconds.default(5),
  timeout: seconds.default(2),
  fails: count(1000).default(3),
  passes: count(1000).default(2),
});

/**
 * A proxy backend: [vhosts.backend] and [vhosts.routes.backend] alike. The
 * upstream options (TLS, HTTP/2, health checks, WebSocket) belong to it, so
 * every place that proxies has them.
 */
const proxyBackend = z.strictObject({
  type: z.literal('proxy'),
  target: upstreamUrl.optional(),
  targets: z.array(proxyTarget).min(1).max(256).optional(),
  load_balancing: z.enum(['round_robin', 'least_connections']).default('round_robin'),
  /** Seconds to establish the upstream connection. */
  connect_timeout: seconds.default(5),
  /** Seconds to wait for the upstream's response headers, and between body chunks: 504 after. */
  timeout: seconds.default(60),
  /** Failures within fail_timeout that take a target out for fail_timeout (nginx max_fails). */
  max_fails: z.number().int().min(0).max(1000).default(1),
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
  client_key_file: nonEmpty.optional(),
  /** https:// targets: the SNI name and the name the certificate must carry; default: the target's host. */
  server_name: nonEmpty.optional(),
  /** https:// targets: verify the upstream's certificate. false accepts any certificate: see docs/proxy.md. */
  verify: z.boolean().default(true),
  health_check: healthCheck.optional(),
});

/**
 * [vhosts.compression] and a route's: only the keys set; the rest comes from
 * the vhost, then from these defaults (compile.ts): on, br > zstd > gzip,
 * text types of at least 1 KiB, no precompressed siblings.
 */
const compression = z
  .strictObject({
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
  z.strictObject({ type: z.literal('static') }),
  proxyBackend,
  z.strictObject({
    type: z.literal('redirect'),
    target: z.url({ protocol: /^https?$/ }),
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
  access: z.strictObject({ allow: z.array(cidr).default([]), deny: z.array(cidr).default([]) }).optional(),
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
  domains: z.array(domainName).min(1),
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
    key_prefix: z
      .string()
      .regex(/^\/([A-Za-z0-9_.-]+\/)*$/, 'an etcd key prefix such as "/miwidothttp/" (starts and ends with "/")')
      .default('/miwidothttp/'),
    /** The cluster CA (`miwidothttp cluster init`): it signs every node's certificate, and etcd's. */
    ca_file: nonEmpty.default('/etc/miwidothttp/cluster/ca.pem'),
    /** This node's certificate (commonName = node_name): its TLS client identity towards etcd and its identity in the cluster. */
    cert_file: nonEmpty.default('/etc/miwidothttp/cluster/node.pem'),
    key_file: nonEmpty.default('/etc/miwidothttp/cluster/node.key'),
    consensus: z
      .strictObject({
        /** Raft timings of a managed member (none has a default here: unset, etcd's defaults below apply). */
        election_timeout_min: raftMs.optional(),
        election_timeout_max: raftMs.optional(),
        heartbeat_interval: raftMs.optional(),
        max_append_entries: z.number().int().min(1).optional(),
        /** etcd members the cluster is built for; quorum_size must be a majority of it. */
        min_cluster_size: z.number().int().min(1).max(99).default(3),
        /** etcd members that must answer for this node to write (with a linearizable read). */
        quorum_size: z.number().int().min(1).max(99).default(2),
        /** Seconds of regained quorum before a node leaves read-only (it catches up first). */
        auto_rejoin: z.boolean().default(true),
        rejoin_delay: z.number().min(0).max(3600).default(30),
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
        run_as_user: nonEmpty.default('etcd'),
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
