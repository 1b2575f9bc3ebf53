/**
 * Keys that would be accepted and then ignored: a value other than the
 * default for a key whose feature is off (`trusted_proxies` without
 * `trust_proxy = true`, a rate without rate limiting, `apparmor_profile`
 * without `enable_apparmor`). Each is a problem of its own, one line naming
 * the switch it waits for: an operator who wrote the key meant something by
 * it, and the forgotten switch is the classic mistake (a proxy's address
 * taken for every client's, until the limits ban the proxy). A switch
 * written off in the file (`trust_proxy = false`) keeps its keys on purpose.
 *
 * Only values that differ from the schema's default count, so a reference
 * file that states every default (config/miwidothttp.toml) stays valid.
 * Pure: the document as written (after ${VAR}) and the validated config.
 */
import { configSchema, type RawConfig } from './schema.js';
import type { ConfigProblem } from './problem.js';

interface Rule {
  /** True when the keys below do nothing. */
  readonly idle: (raw: RawConfig) => boolean;
  /**
   * The switch that turns the feature on. Written in the file (off), it says
   * the operator knows: the keys are kept for when it is turned on, as
   * `enabled = false` in [cluster] keeps its keys. Unwritten, the keys are
   * refused: the forgotten switch is the mistake this module is for.
   */
  readonly switch?: string;
  /** Dotted paths from the top of the document. */
  readonly keys: readonly string[];
  /** What they wait for, as the message says it. */
  readonly needs: string;
}

const RULES: readonly Rule[] = [
  {
    idle: (raw) => raw.cluster !== undefined && !raw.cluster.etcd.managed,
    keys: ['client_url', 'peer_url', 'initial_cluster', 'data_dir', 'run_as_user', 'etcd_binary'].map((key) => `cluster.etcd.${key}`),
    needs: 'cluster.etcd.managed = true (they describe the etcd member this node would run)',
    switch: 'cluster.etcd.managed',
  },
  {
    idle: () => true,
    keys: ['port', 'congestion_control', 'max_idle_timeout', 'initial_max_data', 'initial_max_stream_data'].map(
      (key) => `server.http3.${key}`,
    ),
    needs: 'HTTP/3, which this version does not implement (docs/http3.md)',
  },
  {
    idle: (raw) => !raw.server.metrics.enabled,
    keys: ['server.metrics.bind_address', 'server.metrics.port'],
    needs: 'server.metrics.enabled = true',
    switch: 'server.metrics.enabled',
  },
  {
    idle: (raw) => !raw.server.dashboard.enabled,
    keys: ['server.dashboard.listen', 'server.dashboard.token'],
    needs: 'server.dashboard.enabled = true',
    switch: 'server.dashboard.enabled',
  },
  {
    idle: (raw) => raw.ssl?.provider !== 'acme',
    keys: [
      'ssl.acme_server',
      'ssl.email',
      'ssl.agree_tos',
      'ssl.challenges.preferred',
      'ssl.challenges.http_01_port',
      'ssl.challenges.tls_alpn_01_port',
      'ssl.challenges.dns_01_provider',
    ],
    needs: 'ssl.provider = "acme"',
  },
  {
    idle: (raw) => raw.ssl?.provider !== 'cloudflare',
    keys: ['ssl.api_token', 'ssl.requested_validity'],
    needs: 'ssl.provider = "cloudflare"',
  },
  {
    idle: (raw) => raw.ssl?.provider === undefined || raw.ssl.provider === 'manual',
    keys: ['ssl.cert_dir', 'ssl.key_type', 'ssl.auto_renew', 'ssl.renewal_days_before'],
    needs: 'ssl.provider ("acme" or "cloudflare")',
  },
  {
    idle: (raw) => raw.ssl?.provider !== 'cloudflare' && raw.ssl?.challenges.dns_01_provider !== 'cloudflare',
    keys: ['ssl.cloudflare_api_url'],
    needs: 'ssl.provider = "cloudflare" or ssl.challenges.dns_01_provider = "cloudflare"',
  },
  {
    idle: (raw) => raw.ssl?.challenges.dns_01_provider !== 'cloudflare',
    keys: ['ssl.zone_id'],
    needs: 'ssl.challenges.dns_01_provider = "cloudflare"',
  },
  {
    idle: (raw) => raw.ssl?.challenges.dns_01_provider === undefined,
    keys: ['ssl.challenges.dns_01_credentials', 'ssl.challenges.dns_01_propagation_delay'],
    needs: 'ssl.challenges.dns_01_provider',
  },
  {
    idle: (raw) => raw.ssl?.challenges.dns_01_provider !== 'exec',
    keys: ['ssl.challenges.dns_01_command'],
    needs: 'ssl.challenges.dns_01_provider = "exec"',
  },
  { idle: (raw) => raw.ssl === undefined, keys: ['security.min_tls_version', 'security.ciphers'], needs: '[ssl] certificates' },
  {
    idle: (raw) => !raw.security.proxy_protocol.enabled,
    keys: ['security.proxy_protocol.trusted_proxies'],
    needs: 'security.proxy_protocol.enabled = true',
    switch: 'security.proxy_protocol.enabled',
  },
  {
    idle: (raw) => !raw.security.forwarded.trust_proxy,
    keys: ['trusted_proxies', 'trusted_hops', 'client_ip_headers', 'require_proxy_headers'].map((key) => `security.forwarded.${key}`),
    needs: 'security.forwarded.trust_proxy = true',
    switch: 'security.forwarded.trust_proxy',
  },
  {
    idle: (raw) => !raw.security.rate_limiting.enabled,
    keys: ['security.rate_limiting.requests_per_second', 'security.rate_limiting.burst_size'],
    needs: 'security.rate_limiting.enabled = true',
    switch: 'security.rate_limiting.enabled',
  },
  {
    idle: (raw) => !raw.security.ids.enabled,
    keys: ['security.ids.alert_threshold', 'security.ids.block_threshold', 'security.ids.rules'],
    needs: 'security.ids.enabled = true',
    switch: 'security.ids.enabled',
  },
  {
    idle: (raw) => !raw.security.headers.hsts_enabled,
    keys: ['security.headers.hsts_max_age', 'security.headers.hsts_include_subdomains', 'security.headers.hsts_preload'],
    needs: 'security.headers.hsts_enabled = true',
    switch: 'security.headers.hsts_enabled',
  },
  {
    idle: (raw) => !raw.security.headers.csp_enabled,
    keys: ['security.headers.csp_report_only', 'security.headers.csp_directives'],
    needs: 'security.headers.csp_enabled = true',
    switch: 'security.headers.csp_enabled',
  },
  {
    idle: (raw) => !raw.security.audit.enabled,
    keys: [
      'log_level',
      'log_file',
      'log_authentication',
      'log_authorization',
      'log_configuration_changes',
      'log_security_events',
      'log_admin_actions',
      'format',
      'include_headers',
      'exclude_headers',
    ].map((key) => `security.audit.${key}`),
    needs: 'security.audit.enabled = true',
    switch: 'security.audit.enabled',
  },
  {
    idle: (raw) => raw.security.audit.log_file === undefined,
    keys: ['security.audit.format'],
    needs: 'security.audit.log_file (the main log is JSON lines, one format)',
  },
  {
    idle: (raw) => !raw.process.isolation.enable_apparmor,
    keys: ['process.isolation.apparmor_profile'],
    needs: 'process.isolation.enable_apparmor = true',
    switch: 'process.isolation.enable_apparmor',
  },
  {
    idle: (raw) => !raw.process.isolation.enable_seccomp,
    keys: ['process.isolation.seccomp_default_action', 'process.isolation.allowed_syscalls'],
    needs: 'process.isolation.enable_seccomp = true',
    switch: 'process.isolation.enable_seccomp',
  },
  {
    idle: (raw) => !raw.process.isolation.enable_cgroups,
    keys: ['process.isolation.max_memory', 'process.isolation.max_pids', 'process.isolation.cgroup_parent'],
    needs: 'process.isolation.enable_cgroups = true',
    switch: 'process.isolation.enable_cgroups',
  },
];

/** The schema's own defaults, as a document: what an absent key means. */
const DEFAULTS: unknown = configSchema.parse({ ssl: {}, cluster: {} });

function at(document: unknown, dotted: string): unknown {
  let value = document;
  for (const part of dotted.split('.')) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/**
 * Every key of `document` that differs from its default while its feature is
 * off. Not for a cluster node: its own file holds node-local settings (a
 * cert_dir, credentials) that the shared configuration it runs may turn on
 * at any push (docs/cluster.md).
 */
export function ineffectiveKeys(document: unknown, raw: RawConfig): ConfigProblem[] {
  if (raw.cluster?.enabled) return [];
  const problems: ConfigProblem[] = [];
  for (const rule of RULES) {
    if (!rule.idle(raw) || (rule.switch !== undefined && at(document, rule.switch) !== undefined)) continue;
    for (const key of rule.keys) {
      const written = at(document, key);
      if (written === undefined || JSON.stringify(written) === JSON.stringify(at(DEFAULTS, key))) continue;
      const keep = rule.switch === undefined ? '' : ` (or write ${rule.switch} = false to keep it for later)`;
      problems.push({ key, message: `has no effect without ${rule.needs}; set that, or remove the key${keep}` });
    }
  }
  return problems;
}
