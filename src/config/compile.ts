// Over 400 lines: one pass from the validated config to the compiled one, section by section; the checks that only refuse live in compile-checks.ts.
/**
 * Validated raw config -> CompiledConfig: units into names, sizes into
 * numbers, CIDRs and regexes checked, aliases reconciled, listeners derived.
 * Problems found here are reported like schema problems: key path + reason.
 *
 * Pure: no file system, no process state. What the host contributes (the
 * directory relative paths start from, the CPU count, the cgroup systemd
 * delegated) comes in as HostFacts, probed by the preflight
 * (preflight/host.ts), which also checks the compiled config against the
 * host (preflight/index.ts). [ssl] is compiled in compile-tls.ts.
 */
import { isIP } from 'node:net';
import path from 'node:path';
import { isValidCidr } from '../net/cidr.js';
import { compileVhosts } from './compile-sites.js';
import { NAMED_PROXIES, namedProxy } from '../net/named-proxies.js';
import { antiSmuggling, duplicateDomains } from './compile-checks.js';
import { compileTls } from './compile-tls.js';
import { formatSize, parseSize } from './size.js';
import type { HostFacts } from './preflight/host.js';
import type { ConfigProblem } from './problem.js';
import type { RawConfig, RawVhost } from './schema.js';
import { compileCluster } from './compile-cluster.js';
import { compileDashboard } from './dashboard.js';
import { type BackendContext, compileProxyBackend } from './compile-backend.js';
import { compileListeners } from './listen.js';
import {
  type AuditSpec,
  type BackendSpec,
  type CompiledConfig,
  type HeaderPolicy,
  type IssuanceSpec,
  proxyBackendsOf,
  type TlsSpec,
  type VhostSpec,
} from './types.js';

/**
 * connection_burst_per_ip's floor: a burst no browser with tabs (about six
 * connections per host each, and prefetches) nor a benchmark's pool trips.
 * Above 50 because `wrk -c50` opens 51: one probe connection first.
 */
const DEFAULT_MIN_CONNECTION_BURST = 64;
/** ignore_ip's names, resolved by the master (abuse/index.ts). */
const BAN_EXEMPT_NAMES: ReadonlySet<string> = new Set(['loopback', 'self']);

/** More memory than any one machine has (1024T): a max_memory past it is a typo, and past 2^53 not even a number. */
const MAX_MEMORY_BYTES = 1024 ** 5;

/** Where worker cgroups go outside systemd. */
const DEFAULT_CGROUP_PARENT = 'miwidothttp.slice';

/**
 * Features whose keys are accepted and validated, but which this build does
 * not implement yet. Enabling one is refused rather than silently ignored:
 * a security server must never run without a protection its config asks for.
 */
function unimplemented(raw: RawConfig, problems: ConfigProblem[]): void {
  const refuse = (key: string, what: string): void => {
    problems.push({ key, message: `${what} is not implemented in this version; remove the key to start` });
  };
  if (raw.server.http3.enabled) refuse('server.http3.enabled', 'HTTP/3');
  if (raw.security.audit.include_request_body) refuse('security.audit.include_request_body', 'request bodies in the audit log');
  if (raw.security.audit.include_response_body) refuse('security.audit.include_response_body', 'response bodies in the audit log');
}

/** Two spellings of one setting (the reference config's vs. the production config's): both set must agree. */
function reconcile<T>(problems: ConfigProblem[], a: [string, T | undefined], b: [string, T | undefined], fallback: T): T {
  const [keyA, valueA] = a;
  const [keyB, valueB] = b;
  if (valueA !== undefined && valueB !== undefined && valueA !== valueB) {
    problems.push({ key: keyB, message: `conflicts with ${keyA} (${String(valueA)} vs ${String(valueB)}); set one` });
  }
  return valueA ?? valueB ?? fallback;
}

/** A vhost's or a route's backend; whether a static one has a root is compile-sites.ts's to check (a route inherits it). */
function compileBackend(site: Pick<RawVhost, 'backend'>, key: string, context: BackendContext, problems: ConfigProblem[]): BackendSpec {
  const backend = site.backend;
  if (!backend || backend.type === 'static') return { type: 'static' };
  if (backend.type === 'redirect') {
    return { type: 'redirect', target: backend.target.replace(/\/+$/, ''), status: backend.status, preservePath: backend.preserve_path };
  }
  return compileProxyBackend(backend, `${key}.backend`, context, problems);
}

type RawHeaders = RawConfig['security']['headers'];

function compileResponseHeaders(h: RawHeaders): HeaderPolicy {
  const add: [string, string][] = [];
  const addOverHttps: [string, string][] = [];
  if (h.hsts_enabled) {
    let value = `max-age=${h.hsts_max_age}`;
    if (h.hsts_include_subdomains) value += '; includeSubDomains';
    if (h.hsts_preload) value += '; preload';
    addOverHttps.push(['Strict-Transport-Security', value]);
  }
  if (h.frame_options) add.push(['X-Frame-Options', h.frame_options]);
  if (h.content_type_options) add.push(['X-Content-Type-Options', h.content_type_options]);
  if (h.xss_protection) add.push(['X-XSS-Protection', h.xss_protection]);
  if (h.referrer_policy) add.push(['Referrer-Policy', h.referrer_policy]);
  if (h.permissions_policy) add.push(['Permissions-Policy', h.permissions_policy]);
  if (h.csp_enabled) {
    const csp = h.csp_directives.replace(/\s+/g, ' ').trim();
    add.push([h.csp_report_only ? 'Content-Security-Policy-Report-Only' : 'Content-Security-Policy', csp]);
  }
  const remove: string[] = [];
  for (const [name, value] of Object.entries(h.custom)) {
    if (value === '') remove.push(name.toLowerCase());
    else add.push([name, value]);
  }
  return { add, addOverHttps, remove };
}

/** Written nowhere, whatever include_headers says: credentials. */
const NEVER_LOGGED_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);

function compileAudit(raw: RawConfig, resolvePath: (file: string) => string): AuditSpec {
  const audit = raw.security.audit;
  const excluded = new Set([...NEVER_LOGGED_HEADERS, ...audit.exclude_headers.map((name) => name.toLowerCase())]);
  return {
    enabled: audit.enabled,
    logFile: audit.log_file === undefined ? null : resolvePath(audit.log_file),
    level: audit.log_level,
    format: audit.format,
    logConfigurationChanges: audit.log_configuration_changes,
    logSecurityEvents: audit.log_security_events,
    logAdminActions: audit.log_admin_actions,
    logAuthentication: audit.log_authentication,
    logAuthorization: audit.log_authorization,
    includeHeaders: [...new Set(audit.include_headers.map((name) => name.toLowerCase()))].filter((name) => !excluded.has(name)),
  };
}

/**
 * The compiled config, and the problems that refuse it (none: it may be
 * used). The config is built either way, so that the preflight can report
 * what the host says about it in the same run.
 */
export function compile(raw: RawConfig, source: string, host: HostFacts): { config: CompiledConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  // Relative paths in the config are relative to where the command runs.
  const resolvePath = (file: string): string => path.resolve(host.cwd, file);
  unimplemented(raw, problems);
  antiSmuggling(raw, problems);

  if (isIP(raw.server.bind_address) === 0) {
    problems.push({ key: 'server.bind_address', message: 'must be an IPv4 or IPv6 address' });
  }
  const metrics = raw.server.metrics;
  if (metrics.enabled && isIP(metrics.bind_address) === 0) {
    problems.push({ key: 'server.metrics.bind_address', message: 'must be an IPv4 or IPv6 address' });
  }
  if (raw.server.access_log_file !== undefined && raw.server.access_log === false) {
    problems.push({ key: 'server.access_log', message: 'false, but server.access_log_file is set; remove one' });
  }
  if (raw.server.access_log_format !== undefined && raw.server.access_log_file === undefined) {
    problems.push({ key: 'server.access_log_format', message: 'applies to server.access_log_file, which is not set' });
  }
  const dashboard = compileDashboard(raw);
  problems.push(...dashboard.problems);
  const cidrLists: [string, string[]][] = [
    ['security.proxy_protocol.trusted_proxies', raw.security.proxy_protocol.trusted_proxies],
    ['security.forwarded.trusted_proxies', raw.security.forwarded.trusted_proxies],
    ['security.ddos.whitelist', raw.security.ddos.whitelist],
    ['security.ddos.blacklist', raw.security.ddos.blacklist],
    ['security.ddos.ignore_ip', raw.security.ddos.ignore_ip],
  ];
  for (const [key, list] of cidrLists) {
    const names =
      key === 'security.forwarded.trusted_proxies'
        ? ` or ${Object.keys(NAMED_PROXIES).join(', ')}`
        : key === 'security.ddos.ignore_ip'
          ? ` or ${[...BAN_EXEMPT_NAMES].join(', ')}`
          : '';
    list.forEach((entry, i) => {
      if (key === 'security.forwarded.trusted_proxies' && namedProxy(entry) !== null) return;
      if (key === 'security.ddos.ignore_ip' && BAN_EXEMPT_NAMES.has(entry)) return;
      if (!isValidCidr(entry))
        problems.push({ key: `${key}[${i}]`, message: `not an IP address or CIDR${names}: ${JSON.stringify(entry)}` });
    });
  }
  raw.security.ids.rules.forEach((rule, i) => {
    try {
      new RegExp(rule.pattern, 'i');
    } catch {
      problems.push({ key: `security.ids.rules[${i}].pattern`, message: 'not a valid regular expression' });
    }
  });
  if (raw.security.ids.alert_threshold > raw.security.ids.block_threshold) {
    problems.push({ key: 'security.ids.alert_threshold', message: 'must not exceed security.ids.block_threshold' });
  }

  const t = raw.security.timeouts;
  const l = raw.security.limits;
  const headerReadS = reconcile(
    problems,
    ['security.timeouts.header_read_timeout', t.header_read_timeout],
    ['security.timeouts.header_timeout', t.header_timeout],
    10,
  );
  const bodyReadS = reconcile(
    problems,
    ['security.timeouts.body_read_timeout', t.body_read_timeout],
    ['security.timeouts.body_timeout', t.body_timeout],
    30,
  );
  const perIp = reconcile(
    problems,
    ['security.limits.max_connections_per_ip', l.max_connections_per_ip],
    ['security.timeouts.max_connections_per_ip', t.max_connections_per_ip],
    100,
  );
  const keepAliveS = t.keepalive_timeout ?? t.idle_timeout;
  if (keepAliveS > t.idle_timeout) {
    problems.push({ key: 'security.timeouts.keepalive_timeout', message: 'must not exceed security.timeouts.idle_timeout' });
  }
  if (headerReadS > t.request_timeout) {
    problems.push({ key: 'security.timeouts.header_read_timeout', message: 'must not exceed security.timeouts.request_timeout' });
  }

  const iso = raw.process.isolation;
  if (parseSize(iso.max_memory) > MAX_MEMORY_BYTES) {
    problems.push({
      key: 'process.isolation.max_memory',
      message: `${iso.max_memory} is more than any machine has (at most ${formatSize(MAX_MEMORY_BYTES)})`,
    });
  }
  if (!iso.enable_cgroups && (iso.max_cpu_percent !== undefined || iso.io_weight !== undefined)) {
    problems.push({ key: 'process.isolation.enable_cgroups', message: 'max_cpu_percent and io_weight need per-worker cgroups' });
  }
  if (iso.run_as_user === 'root' || iso.run_as_user === '0') {
    problems.push({ key: 'process.isolation.run_as_user', message: 'workers never run as root (unset it for a uid per worker)' });
  }
  if (iso.working_dir !== '/' && iso.chroot === undefined) {
    problems.push({ key: 'process.isolation.working_dir', message: 'only meaningful inside process.isolation.chroot' });
  }
  const pp = raw.security.proxy_protocol;
  if (pp.required && !pp.enabled)
    problems.push({ key: 'security.proxy_protocol.required', message: 'needs security.proxy_protocol.enabled' });
  if (pp.enabled && pp.trusted_proxies.length === 0) {
    problems.push({ key: 'security.proxy_protocol.trusted_proxies', message: 'list the proxies allowed to send a PROXY header' });
  }
  const chroot = iso.chroot === undefined ? null : resolvePath(iso.chroot);
  const backendContext: BackendContext = { resolvePath, chroot };
  const vhosts = compileVhosts(raw, resolvePath, problems, {
    backend: (site, key, found) => compileBackend(site, key, backendContext, found),
    headers: compileResponseHeaders,
  });
  duplicateDomains(vhosts, problems);
  const { tls, issuance } = compileTls(raw, resolvePath, problems);
  problems.push(...exposedSecrets(vhosts, iso.chroot === undefined, resolvePath(raw.server.state_dir), tls, issuance, source));
  const headers = compileResponseHeaders(raw.security.headers);
  const cluster = compileCluster(raw, resolvePath, host, problems);
  const server = raw.server;
  const controlSocket = server.control_socket ?? server.pid_file.replace(/(\.pid)?$/, '.sock');

  const config: CompiledConfig = {
    source,
    server: {
      workerCount: server.workers === 0 ? host.cpuCount : server.workers,
      pidFile: resolvePath(server.pid_file),
      controlSocket: resolvePath(controlSocket),
      shutdownTimeoutMs: server.shutdown_timeout * 1000,
      workerReadyTimeoutMs: server.worker_ready_timeout * 1000,
      logFile: server.log_file === undefined ? null : resolvePath(server.log_file),
      logLevel: server.log_level,
      // With a file the lines go there; access_log alone keeps them in the main log.
      accessLog: server.access_log ?? false,
      accessLogFile: server.access_log_file === undefined ? null : resolvePath(server.access_log_file),
      accessLogFormat: server.access_log_format ?? 'combined',
      accessLogQuery: server.access_log_query,
      stateDir: resolvePath(server.state_dir),
      metrics: server.metrics.enabled ? { address: server.metrics.bind_address, port: server.metrics.port } : null,
      dashboard: dashboard.spec,
    },
    listeners: compileListeners(raw, tls, dashboard.spec, problems),
    tls,
    issuance,
    limits: {
      maxHeaderBytes: l.max_header_size,
      maxHeaders: l.max_headers,
      maxHeaderNameBytes: l.max_header_name_len,
      maxHeaderValueBytes: l.max_header_value_len,
      maxBodyBytes: l.max_body_size,
      maxMultipartBytes: l.max_multipart_size,
      maxJsonDepth: l.max_json_depth,
      maxFormFields: l.max_form_fields,
      maxUrlBytes: l.max_url_length,
      maxConnections: l.max_connections,
      maxConnectionsPerIp: perIp,
      connectionRatePerIp: t.connection_rate_per_ip,
      connectionBurstPerIp: t.connection_burst_per_ip ?? Math.max(2 * t.connection_rate_per_ip, DEFAULT_MIN_CONNECTION_BURST),
      // force_connection_close: one request per connection.
      maxRequestsPerConnection: raw.security.anti_smuggling.force_connection_close
        ? 1
        : raw.security.anti_smuggling.max_request_per_connection,
      maxChunkBytes: raw.security.anti_smuggling.max_chunk_size,
      maxConcurrentStreams: l.max_concurrent_streams,
    },
    timeouts: {
      headerReadTimeoutMs: headerReadS * 1000,
      bodyReadTimeoutMs: bodyReadS * 1000,
      writeTimeoutMs: t.write_timeout * 1000,
      idleTimeoutMs: t.idle_timeout * 1000,
      keepAliveTimeoutMs: keepAliveS * 1000,
      requestTimeoutMs: t.request_timeout * 1000,
      minDataRateBytesPerSec: t.min_data_rate,
    },
    audit: compileAudit(raw, resolvePath),
    proxyProtocol: {
      enabled: raw.security.proxy_protocol.enabled,
      required: raw.security.proxy_protocol.required,
      trustedProxies: raw.security.proxy_protocol.trusted_proxies,
      // proxy-protocol.txt §2: at least 3 s, to ride out a TCP retransmit.
      headerTimeoutMs: Math.max(3000, headerReadS * 1000),
    },
    forwarded: {
      trustProxy: raw.security.forwarded.trust_proxy,
      trustedProxies: raw.security.forwarded.trusted_proxies.flatMap((entry) => namedProxy(entry)?.ranges ?? [entry]),
      namedProxyHeaders: [...new Set(raw.security.forwarded.trusted_proxies.map(namedProxy))].flatMap((named) =>
        named === null ? [] : [{ header: named.clientIpHeader, from: named.ranges }],
      ),
      trustedHops: raw.security.forwarded.trusted_hops,
      clientIpHeaders: raw.security.forwarded.client_ip_headers,
      rejectPrivateIp: raw.security.forwarded.reject_private_ip,
      requireProxyHeaders: raw.security.forwarded.require_proxy_headers,
    },
    access: {
      whitelist: raw.security.ddos.whitelist,
      blacklist: raw.security.ddos.blacklist,
      banSeconds: raw.security.ddos.ban_seconds,
      banAfterBreaches: raw.security.ddos.ban_after_breaches,
      ignoreIp: raw.security.ddos.ignore_ip,
      breachWindowMs: raw.security.ddos.breach_window * 1000,
      maxTrackedClients: raw.security.ddos.max_tracked_clients,
      maxBans: raw.security.ddos.max_bans,
    },
    rateLimit: raw.security.rate_limiting.enabled
      ? { requestsPerSecond: raw.security.rate_limiting.requests_per_second, burst: raw.security.rate_limiting.burst_size }
      : null,
    ids: raw.security.ids.enabled
      ? {
          alertThreshold: raw.security.ids.alert_threshold,
          blockThreshold: raw.security.ids.block_threshold,
          rules: raw.security.ids.rules,
        }
      : null,
    responseHeaders: headers,
    isolation: {
      runAsUser: iso.run_as_user ?? null,
      runAsGroup: iso.run_as_group ?? null,
      workerUidBase: iso.worker_uid_base,
      chroot: iso.chroot === undefined ? null : resolvePath(iso.chroot),
      workingDir: iso.working_dir,
      maxMemoryBytes: iso.enable_cgroups ? Math.min(parseSize(iso.max_memory), MAX_MEMORY_BYTES) : null,
      maxCpuPercent: iso.enable_cgroups ? (iso.max_cpu_percent ?? null) : null,
      maxOpenFiles: iso.max_open_files,
      maxPids: iso.enable_cgroups ? iso.max_pids : null,
      ioWeight: iso.enable_cgroups ? (iso.io_weight ?? null) : null,
      resourceGracePeriodMs: iso.resource_grace_period * 1000,
      seccomp: iso.enable_seccomp ? iso.seccomp_default_action : 'off',
      allowedSyscalls: iso.allowed_syscalls ?? null,
      apparmorProfile: iso.enable_apparmor ? iso.apparmor_profile : null,
      // Unset: the cgroup systemd delegated to the service, else miwidothttp.slice at the root.
      cgroupParent: iso.enable_cgroups ? (iso.cgroup_parent ?? host.delegatedCgroup ?? DEFAULT_CGROUP_PARENT) : null,
    },
    vhosts,
    cluster,
    htpasswd: {},
  };
  return { config: deepFreeze(config), problems };
}

/**
 * Without a chroot, workers run in an empty jail the master makes, with each
 * static root bound in read-only (docs/security.md, "The jail by default").
 * A root that holds the master's secrets would bind them in too: refused.
 */
function exposedSecrets(
  vhosts: readonly VhostSpec[],
  rootsBound: boolean,
  stateDir: string,
  tls: TlsSpec | null,
  issuance: IssuanceSpec | null,
  source: string,
): ConfigProblem[] {
  const secrets: [string, string][] = [
    ['server.state_dir', stateDir],
    ...(tls?.certificates.map((entry): [string, string] => [`the key of ${entry.name}`, entry.keyFile]) ?? []),
    ...(issuance === null ? [] : [['ssl.cert_dir', issuance.certDir] as [string, string]]),
    ...(path.isAbsolute(source) ? [['the config file', source] as [string, string]] : []),
  ];
  // What is bound into the jail: the static roots (without a chroot), and the unix: upstreams' sockets or their directories.
  const bound: { key: string; path: string; fix: string }[] = [];
  if (rootsBound) {
    vhosts.forEach((vhost, i) => {
      const fix = 'serve a directory without it';
      if (vhost.hostRoot !== null) bound.push({ key: `vhosts[${i}].root`, path: vhost.hostRoot, fix });
      vhost.routes.forEach((route, j) => {
        if (route.hostRoot !== null && route.hostRoot !== vhost.hostRoot)
          bound.push({ key: `vhosts[${i}].routes[${j}].root`, path: route.hostRoot, fix });
      });
    });
  }
  for (const backend of proxyBackendsOf(vhosts)) {
    if (backend.tls?.clientKeyFile != null) secrets.push([`the upstream client key of ${backend.configKey}`, backend.tls.clientKeyFile]);
    backend.targets.forEach((target, j) => {
      if (target.jailBind !== null)
        bound.push({
          key: `${backend.configKey}.targets[${j}]`,
          path: target.jailBind.hostPath,
          fix: 'give the socket a directory of its own',
        });
    });
  }
  const problems: ConfigProblem[] = [];
  for (const { key, path: dir, fix } of bound) {
    const exposed = secrets.find(([, secret]) => secret === dir || secret.startsWith(dir === '/' ? '/' : dir + path.sep));
    if (exposed === undefined) continue;
    const [what, secret] = exposed;
    problems.push({ key, message: `${dir} holds ${what} (${secret}), which the workers' jail would show them; ${fix}` });
  }
  return problems;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
