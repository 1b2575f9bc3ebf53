/**
 * The compiled config: what the master runs on and sends to every worker.
 * Plain, JSON-serialisable data with the unit in every name; workers build
 * their matchers (vhost router, regexes) from it and never see TOML.
 * (Over 400 lines: one type per config section, kept together so master and
 * worker read one definition of what they share.)
 */

export type Protocol = 'http' | 'https';

export interface ListenerSpec {
  /** Stable identity across reloads: "http 127.0.0.1:8080". */
  readonly id: string;
  /** What is served there: the sites, the Prometheus metrics ([server.metrics]) or the security dashboard ([server.dashboard]). */
  readonly purpose: 'sites' | 'metrics' | 'dashboard';
  readonly protocol: Protocol;
  readonly address: string;
  readonly port: number;
}

export interface ProxyTarget {
  /** As configured: "http://host:port/prefix", "https://...", or "unix:/path/app.sock". */
  readonly url: string;
  readonly weight: number;
  /** unix: targets: the socket as the worker sees it (inside its jail); null for TCP targets. */
  readonly socketPath: string | null;
  /** unix: targets: the same socket as a host path. */
  readonly hostSocketPath: string | null;
  /**
   * What is bound into the workers' jail for it (isolation/jail.ts): the
   * socket's directory, or the socket alone when that directory is shared
   * (/run, /tmp, ...), as a host path and where it appears in the jail (the
   * same path, or its path inside the chroot); null for TCP targets. A socket
   * inside the chroot is bound too: the jail is an overlay of the chroot, and
   * a socket seen through overlayfs cannot be connected to.
   */
  readonly jailBind: { readonly hostPath: string; readonly jailPath: string } | null;
}

/**
 * TLS to https:// targets. The files are named here and read by the master
 * when it loads the config (config/upstream-tls.ts): workers get their PEM in
 * `pem`, never a path to open (a client key is root's).
 */
export interface UpstreamTlsSpec {
  readonly caFile: string | null;
  readonly clientCertFile: string | null;
  readonly clientKeyFile: string | null;
  /** SNI and the name the upstream's certificate must carry; null: each target's host name. */
  readonly serverName: string | null;
  /** false: any certificate is accepted (verify = false). */
  readonly verify: boolean;
  /** The files' contents, filled in by the master before the config goes to workers; null until then. */
  readonly pem: { readonly ca: string | null; readonly cert: string | null; readonly key: string | null } | null;
}

/** Active health checks of every target of one proxy backend. */
export interface HealthCheckSpec {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Failed checks in a row that take a target out. */
  readonly fails: number;
  /** Passed checks in a row that bring it back. */
  readonly passes: number;
}

/** A reverse proxy backend, wherever it is configured ([vhosts.backend], [vhosts.routes.backend]). */
export interface ProxyBackendSpec {
  readonly type: 'proxy';
  /** Where it is configured ("vhosts[0].routes[2].backend"): what later checks (its TLS files) name. */
  readonly configKey: string;
  readonly targets: readonly ProxyTarget[];
  readonly loadBalancing: 'round_robin' | 'least_connections';
  readonly connectTimeoutMs: number;
  readonly upstreamTimeoutMs: number;
  readonly maxFails: number;
  readonly failTimeoutMs: number;
  readonly preserveHost: boolean;
  readonly keepAlive: boolean;
  /** WebSocket upgrades are proxied; false: refused (UPGRADE_REFUSED). */
  readonly webSocket: boolean;
  /** How requests go upstream: HTTP/1.1, or HTTP/2 (h2c on http:// and unix: targets). */
  readonly protocol: 'http/1.1' | 'h2';
  /** TLS settings of the https:// targets; null: defaults (system CAs, verified, no client certificate). */
  readonly tls: UpstreamTlsSpec | null;
  /** null: passive health only (max_fails / fail_timeout). */
  readonly healthCheck: HealthCheckSpec | null;
}

export type BackendSpec =
  | { readonly type: 'static' }
  | ProxyBackendSpec
  | {
      readonly type: 'redirect';
      readonly target: string;
      readonly status: 301 | 302 | 303 | 307 | 308;
      readonly preservePath: boolean;
    };

/** A content coding the server can apply (RFC 9110 §8.4.1; zstd: RFC 8878). */
export type ContentCoding = 'br' | 'zstd' | 'gzip';

/** [vhosts.compression] with the vhost's and the defaults' values filled in. */
export interface CompressionSpec {
  readonly enabled: boolean;
  /** The server's preference, first best; the client's q-values decide first. */
  readonly algorithms: readonly ContentCoding[];
  /** Serve fresh file.br / file.zst / file.gz siblings. */
  readonly precompressed: boolean;
  /** Responses with a known length below this are sent as they are. */
  readonly minLengthBytes: number;
}

/** [vhosts.auth] or a route's: Basic authentication against an htpasswd file the master reads. */
export interface AuthSpec {
  readonly realm: string;
  /** Host path of the htpasswd file; its lines reach workers in CompiledConfig.htpasswd, never the path's content otherwise. */
  readonly htpasswdFile: string;
}

/** [vhosts.access] or a route's: CIDRs; deny first, then allow (when not empty). */
export interface SiteAccessSpec {
  readonly allow: readonly string[];
  readonly deny: readonly string[];
}

/**
 * What answers a request once the vhost and the route are chosen: a vhost's
 * own settings (its fallback), or a route's with the vhost's filled in where
 * the route says nothing (compile.ts).
 */
export interface SiteSpec {
  /** Directory served, as the worker sees it (inside the jail), or null when the site only proxies or redirects. */
  readonly root: string | null;
  /** The same directory as a host path. */
  readonly hostRoot: string | null;
  readonly indexFiles: readonly string[];
  readonly directoryListing: boolean;
  /** try_files entries ("$uri", "$uri/", "/index.html"), or null: the path alone. */
  readonly tryFiles: readonly string[] | null;
  /** Status -> page path below root. */
  readonly errorPages: Readonly<Record<string, string>>;
  readonly backend: BackendSpec;
  readonly auth: AuthSpec | null;
  readonly access: SiteAccessSpec | null;
  readonly compression: CompressionSpec;
  /** The site's own security headers (over the vhost's, over the server's), or null for the server's. */
  readonly responseHeaders: HeaderPolicy | null;
}

/** A [[vhosts.routes]] entry, compiled. */
export interface RouteSpec extends SiteSpec {
  /** The prefix, as configured (normalised): "/api/" or "/api". */
  readonly path: string;
  readonly stripPrefix: boolean;
}

export interface VhostSpec extends SiteSpec {
  /** Lower-case names: "example.com", "*.example.com" or "*". */
  readonly domains: readonly string[];
  /** Longest path first. */
  readonly routes: readonly RouteSpec[];
}

/** [security.headers] compiled: what every response gets. */
export interface HeaderPolicy {
  /** Added to every response unless the handler set the header itself, in order. */
  readonly add: readonly (readonly [string, string])[];
  /** Added to HTTPS responses only: HSTS (RFC 6797 §7.2: never over plain HTTP). */
  readonly addOverHttps: readonly (readonly [string, string])[];
  /** Lower-case names removed from every response (custom headers set to ""). */
  readonly remove: readonly string[];
}

export interface ServerSpec {
  readonly workerCount: number;
  readonly pidFile: string;
  readonly controlSocket: string;
  readonly shutdownTimeoutMs: number;
  readonly workerReadyTimeoutMs: number;
  readonly logFile: string | null;
  readonly logLevel: string;
  /** One pino line per request in the main log ([server].access_log without access_log_file). */
  readonly accessLog: boolean;
  /** The access log file the master writes, or null. */
  readonly accessLogFile: string | null;
  readonly accessLogFormat: 'combined' | 'json';
  /** Query strings are kept in access log lines. */
  readonly accessLogQuery: boolean;
  /** Where the master keeps its state (bans.json). */
  readonly stateDir: string;
  /** The Prometheus endpoint's address, or null when off. */
  readonly metrics: { readonly address: string; readonly port: number } | null;
  /** The security dashboard, or null when off. */
  readonly dashboard: DashboardSpec | null;
}

/**
 * [server.dashboard] compiled: where it listens and how a client's token is
 * checked. Never the token itself: the workers that check it get its digest.
 */
export interface DashboardSpec {
  readonly address: string;
  readonly port: number;
  /** SHA-256 of the token, hex. */
  readonly tokenSha256: string;
  /** HMAC-SHA256 key (hex) that signs the login cookie; derived from the token, so a new token ends every session. */
  readonly sessionKey: string;
}

/** [security.ddos]: who is never limited, who is never served, and when a client is banned. */
export interface AccessSpec {
  /** CIDRs never limited or banned. */
  readonly whitelist: readonly string[];
  /** CIDRs closed at accept, before a byte is read. */
  readonly blacklist: readonly string[];
  readonly banSeconds: number;
  /** Breaches within breachWindowMs that ban a client; 0: limits never ban. */
  readonly banAfterBreaches: number;
  /** Never banned (ignore_ip): CIDRs, and the names "loopback" and "self" (resolved by the master). */
  readonly ignoreIp: readonly string[];
  readonly breachWindowMs: number;
  readonly maxTrackedClients: number;
  /** Bans in force at most ([security.ddos] max_bans). */
  readonly maxBans: number;
}

/** [security.rate_limiting]: a token bucket per client IP, held by the master. */
export interface RateLimitSpec {
  readonly requestsPerSecond: number;
  readonly burst: number;
}

export interface IdsRule {
  readonly name: string;
  /** A regular expression, matched case-insensitively. */
  readonly pattern: string;
  readonly severity: 'low' | 'medium' | 'high' | 'critical';
  readonly action: 'log' | 'block';
}

export interface IdsSpec {
  readonly alertThreshold: number;
  readonly blockThreshold: number;
  readonly rules: readonly IdsRule[];
}

export interface LimitsSpec {
  readonly maxHeaderBytes: number;
  readonly maxHeaders: number;
  readonly maxHeaderNameBytes: number;
  readonly maxHeaderValueBytes: number;
  readonly maxBodyBytes: number;
  readonly maxMultipartBytes: number;
  readonly maxJsonDepth: number;
  readonly maxFormFields: number;
  readonly maxUrlBytes: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  readonly connectionRatePerIp: number;
  /** New connections one client may open at once (the bucket's size; connectionRatePerIp refills it). */
  readonly connectionBurstPerIp: number;
  readonly maxRequestsPerConnection: number;
  readonly maxChunkBytes: number;
  /** HTTP/2 streams open at once on one connection; the header list size is derived from maxHeaderBytes (worker/http2.ts). */
  readonly maxConcurrentStreams: number;
}

export interface TimeoutsSpec {
  readonly headerReadTimeoutMs: number;
  readonly bodyReadTimeoutMs: number;
  readonly writeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly minDataRateBytesPerSec: number;
}

export interface IsolationSpec {
  /** Every worker runs as this user; null: each worker runs as a uid of its own from workerUidBase (docs/security.md). */
  readonly runAsUser: string | null;
  /** The workers' group: the configured one, else runAsUser's, else the "miwidothttp" account's. */
  readonly runAsGroup: string | null;
  readonly workerUidBase: number;
  /** Absolute host path of the operator's jail, or null: workers run in an empty jail the master makes (state_dir/jail). */
  readonly chroot: string | null;
  readonly workingDir: string;
  readonly maxMemoryBytes: number | null;
  readonly maxCpuPercent: number | null;
  readonly maxOpenFiles: number;
  readonly maxPids: number | null;
  readonly ioWeight: number | null;
  readonly resourceGracePeriodMs: number;
  readonly seccomp: 'off' | 'errno' | 'kill';
  readonly allowedSyscalls: readonly string[] | null;
  readonly apparmorProfile: string | null;
  /** Relative cgroup path under which each worker gets its own cgroup, or null for none. */
  readonly cgroupParent: string | null;
}

export interface ProxyProtocolSpec {
  readonly enabled: boolean;
  /** A connection without a header is closed. */
  readonly required: boolean;
  /** Only these may send a header (CIDRs). */
  readonly trustedProxies: readonly string[];
  readonly headerTimeoutMs: number;
}

export interface ForwardedSpec {
  readonly trustProxy: boolean;
  /** CIDRs; a named proxy ("cloudflare") is expanded to its ranges. */
  readonly trustedProxies: readonly string[];
  readonly trustedHops: number;
  readonly clientIpHeaders: readonly string[];
  /** The header each named proxy sets for the client, believed only from its own ranges, before clientIpHeaders. */
  readonly namedProxyHeaders: readonly { readonly header: string; readonly from: readonly string[] }[];
  readonly rejectPrivateIp: boolean;
  readonly requireProxyHeaders: boolean;
}

export interface AuditSpec {
  readonly enabled: boolean;
  /** Absolute path, or null: audit events go to the main log. */
  readonly logFile: string | null;
  readonly level: string;
  readonly format: 'json' | 'text';
  readonly logConfigurationChanges: boolean;
  readonly logSecurityEvents: boolean;
  readonly logAdminActions: boolean;
  /** Logins to the dashboard, failed and successful (events named auth.*). */
  readonly logAuthentication: boolean;
  /** Clients refused for who they are: blacklisted, banned, or by a site's access lists (logging/audit-categories.ts). */
  readonly logAuthorization: boolean;
  /** Lower-case request headers copied into request events; never a credential. */
  readonly includeHeaders: readonly string[];
}

/** [ssl] with manual certificates, and the [security] TLS policy. */
export interface TlsSpec {
  /** `[ssl.domains."name"]` entries, in config order; the first is the default certificate (no SNI, no match). */
  readonly certificates: readonly {
    readonly name: string;
    readonly certFile: string;
    readonly keyFile: string;
    readonly chainFile?: string;
  }[];
  readonly minVersion: '1.2' | '1.3';
  /** security.ciphers, or null for the default (Mozilla intermediate). */
  readonly ciphers: readonly string[] | null;
  /** HTTP requests are redirected to HTTPS (security.enforce_https). */
  readonly enforceHttps: boolean;
  readonly httpsPort: number;
  /** Longest a TLS handshake may take (the header timeout: a slow handshake is a slowloris too). */
  readonly handshakeTimeoutMs: number;
  /** [ssl.challenges] http_01_path without a trailing slash: ACME HTTP-01 answers live under it, over plain HTTP. */
  readonly acmeChallengePath: string;
  /** provider = "acme": the workers answer HTTP-01 under acmeChallengePath (else files there are served like any other). */
  readonly answersAcmeChallenges: boolean;
}

/**
 * [ssl] provider: certificates the master obtains and renews. Master-only:
 * it holds credentials, so it is removed from the copy workers get
 * (`forWorkers`).
 */
export interface IssuanceSpec {
  readonly provider: 'acme' | 'cloudflare';
  /** One certificate per name: the names of `domains = [...]`, or every vhost name without a manual certificate. */
  readonly names: readonly string[];
  /** Root-only: the ACME account and the issued certificates. */
  readonly certDir: string;
  readonly keyType: 'ecdsa' | 'rsa';
  readonly autoRenew: boolean;
  readonly renewalDaysBefore: number;
  readonly acme: {
    readonly directoryUrl: string;
    readonly email: string | null;
    readonly agreeTos: boolean;
    readonly preferred: readonly ('http-01' | 'tls-alpn-01' | 'dns-01')[];
    /** How long to wait after publishing a TXT record before the CA looks. */
    readonly dnsPropagationDelayMs: number;
    readonly dns:
      | { readonly provider: 'cloudflare'; readonly apiUrl: string; readonly token: string; readonly zoneId: string | null }
      | { readonly provider: 'exec'; readonly command: string; readonly credentials: string | null }
      | null;
  } | null;
  readonly cloudflare: { readonly apiUrl: string; readonly token: string; readonly validityDays: number } | null;
}

/**
 * [cluster] compiled: how this node reaches etcd and proves who it is.
 * Master-only: it holds cluster_token, so it is removed from the copy
 * workers get (`forWorkers`).
 */
export interface ClusterSpec {
  readonly nodeName: string;
  readonly endpoints: readonly string[];
  /** Every key of the cluster lives under it ("/miwidothttp/"). */
  readonly keyPrefix: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly token: string;
  readonly minClusterSize: number;
  readonly quorumSize: number;
  readonly autoRejoin: boolean;
  readonly rejoinDelayMs: number;
  readonly maxNodes: number;
  readonly allowAutoJoin: boolean;
  readonly requireTls: boolean;
  /** Deadline of the health loop's linearizable read. */
  readonly healthTimeoutMs: number;
  /** The local etcd member the master runs, or null for an etcd cluster run elsewhere. */
  readonly managed: {
    readonly binary: string;
    readonly dataDir: string;
    readonly clientUrl: string;
    readonly peerUrl: string;
    readonly initialCluster: readonly { readonly name: string; readonly peerUrl: string }[];
    readonly runAsUser: string;
    readonly electionTimeoutMs: number;
    readonly heartbeatIntervalMs: number;
  } | null;
}

export interface CompiledConfig {
  /** The file this came from, or "(built-in default)". */
  readonly source: string;
  readonly server: ServerSpec;
  readonly listeners: readonly ListenerSpec[];
  /** null: no TLS, no HTTPS listener. */
  readonly tls: TlsSpec | null;
  /** null: no provider; workers always get null (see forWorkers). */
  readonly issuance: IssuanceSpec | null;
  readonly limits: LimitsSpec;
  readonly timeouts: TimeoutsSpec;
  readonly audit: AuditSpec;
  readonly proxyProtocol: ProxyProtocolSpec;
  readonly forwarded: ForwardedSpec;
  readonly access: AccessSpec;
  /** null: rate limiting off. */
  readonly rateLimit: RateLimitSpec | null;
  /** null: intrusion detection off. */
  readonly ids: IdsSpec | null;
  /** Security headers of every response (a vhost may have its own). */
  readonly responseHeaders: HeaderPolicy;
  readonly isolation: IsolationSpec;
  readonly vhosts: readonly VhostSpec[];
  /** null: a single node, no etcd ([cluster] absent or enabled = false). Workers always get null. */
  readonly cluster: ClusterSpec | null;
  /**
   * htpasswd file -> its [user, bcrypt hash] lines. Empty as compiled: the
   * master reads the files for each generation (config/htpasswd.ts, master/supervisor.ts) and
   * sends them with the config; workers never open them.
   */
  readonly htpasswd: Readonly<Record<string, readonly (readonly [string, string])[]>>;
}

/** The config a worker gets: without the master-only issuance and cluster settings (credentials, cluster_token). */
export function forWorkers(config: CompiledConfig): CompiledConfig {
  return config.issuance === null && config.cluster === null ? config : { ...config, issuance: null, cluster: null };
}

/**
 * Every proxy backend of these vhosts, theirs and their routes', once each
 * (a route without a backend of its own shares its vhost's), for whatever
 * walks them all (upstream TLS files, unix socket binds, secrets bound into
 * the jail). The one place that knows where backends live.
 */
export function proxyBackendsOf(vhosts: readonly VhostSpec[]): ProxyBackendSpec[] {
  const found = new Set<ProxyBackendSpec>();
  for (const site of vhosts.flatMap((vhost) => [vhost, ...vhost.routes])) if (site.backend.type === 'proxy') found.add(site.backend);
  return [...found];
}

/** proxyBackendsOf(config.vhosts), each with the key it is configured at. */
export function proxyBackends(config: CompiledConfig): { readonly key: string; readonly backend: ProxyBackendSpec }[] {
  return proxyBackendsOf(config.vhosts).map((backend) => ({ key: backend.configKey, backend }));
}

/** The config with every proxy backend replaced by `map`'s answer, once per backend (the rest shared, frozen again). */
export function mapProxyBackends(config: CompiledConfig, map: (backend: ProxyBackendSpec) => ProxyBackendSpec): CompiledConfig {
  const mapped = new Map<ProxyBackendSpec, ProxyBackendSpec>();
  const mapSite = <S extends SiteSpec>(site: S): S => {
    if (site.backend.type !== 'proxy') return site;
    let backend = mapped.get(site.backend);
    if (backend === undefined) {
      backend = Object.freeze(map(site.backend));
      mapped.set(site.backend, backend);
    }
    return Object.freeze({ ...site, backend });
  };
  const vhosts = config.vhosts.map((vhost) => {
    const own = mapSite(vhost);
    return Object.freeze({ ...own, routes: Object.freeze(vhost.routes.map(mapSite)) });
  });
  return Object.freeze({ ...config, vhosts: Object.freeze(vhosts) });
}
