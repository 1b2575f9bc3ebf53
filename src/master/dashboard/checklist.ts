/**
 * The deployment security checklist, evaluated from the running config and
 * what the kernel says about the workers: a pure function, config and host
 * facts in, one light per item out, each with one line saying why and the
 * key that changes it.
 *
 * green: the item holds. amber: it holds with a weakness worth fixing.
 * red: it does not hold. Items the server cannot see (backups, incident
 * response, penetration tests, update schedules) are not on the list.
 */
import type { CompiledConfig, HeaderPolicy } from '../../config/types.js';
import { implicitJail } from '../../isolation/jail.js';
import type { ProcessFacts } from './host-facts.js';

export type Light = 'green' | 'amber' | 'red';

export interface ChecklistItem {
  readonly id: string;
  readonly title: string;
  readonly status: Light;
  /** One line: why this light. */
  readonly why: string;
  /** The config key that changes it; "" when none does (the server always sets it). */
  readonly key: string;
}

export interface CertificateFacts {
  readonly name: string;
  readonly source: 'manual' | 'acme' | 'cloudflare';
  /** ISO date; null while a provider has not issued it yet. */
  readonly notAfter: string | null;
  readonly lastError: string | null;
}

export interface HostFacts {
  /** Epoch ms. */
  readonly now: number;
  /** The serving workers, as read from /proc by the master. */
  readonly workers: readonly ProcessFacts[];
  readonly certificates: readonly CertificateFacts[];
  /** The audit log file could not be written. */
  readonly auditLogFailing: boolean;
}

interface Finding {
  readonly status: Exclude<Light, 'green'>;
  readonly why: string;
  readonly key: string;
}

const DAY_MS = 86_400_000;
/** OWASP HTTP Headers Cheat Sheet: HSTS max-age of at least a year. */
const HSTS_MIN_MAX_AGE_S = 31_536_000;
/** A manual certificate this close to expiry needs the operator now; an issued one should have been renewed. */
const CERT_AMBER_DAYS = 30;
const ISSUED_AMBER_DAYS = 14;
const CERT_RED_DAYS = 7;

/** The worst finding (red before amber, then in order), or green with `ok`. */
function item(id: string, title: string, findings: readonly Finding[], ok: string, okKey: string): ChecklistItem {
  const worst = findings.find((finding) => finding.status === 'red') ?? findings[0];
  if (worst === undefined) return { id, title, status: 'green', why: ok, key: okKey };
  const more = findings.length > 1 ? ` (and ${findings.length - 1} more)` : '';
  return { id, title, status: worst.status, why: `${worst.why}${more}`, key: worst.key };
}

export function evaluateChecklist(config: CompiledConfig, host: HostFacts): ChecklistItem[] {
  return [
    tlsPolicy(config),
    ...host.certificates.map((certificate) => certificateExpiry(certificate, host.now)),
    hsts(config),
    enforceHttps(config),
    securityHeaders(config),
    rateLimiting(config),
    ddosLimits(config),
    processIsolation(config, host.workers),
    auditLog(config, host.auditLogFailing),
    intrusionDetection(config),
    dashboardExposure(config),
  ];
}

const NO_TLS: Finding = { status: 'red', why: 'no HTTPS listener: every request and answer travels in clear', key: 'ssl.domains' };

function tlsPolicy(config: CompiledConfig): ChecklistItem {
  const tls = config.tls;
  const title = 'TLS with strong ciphers';
  if (tls === null) return item('tls', title, [NO_TLS], '', '');
  const versions = tls.minVersion === '1.3' ? 'TLS 1.3 only' : 'TLS 1.2 and 1.3';
  if (tls.ciphers !== null)
    return item('tls', title, [], `${versions}, ${tls.ciphers.length} chosen suites (weak ones are refused at load)`, 'security.ciphers');
  return item('tls', title, [], `${versions}, Mozilla intermediate suites (ECDHE with AEAD only)`, 'security.min_tls_version');
}

function certificateExpiry(certificate: CertificateFacts, now: number): ChecklistItem {
  const issued = certificate.source !== 'manual';
  const key = issued ? 'ssl.renewal_days_before' : `ssl.domains.${JSON.stringify(certificate.name)}.cert_file`;
  const id = `certificate:${certificate.name}`;
  const title = `Certificate ${certificate.name}`;
  const error = certificate.lastError === null ? '' : `: ${certificate.lastError}`;
  if (certificate.notAfter === null)
    return item(id, title, [{ status: 'red', why: `not obtained from ${certificate.source} yet${error}`, key: 'ssl.provider' }], '', '');
  const until = Date.parse(certificate.notAfter);
  const days = Math.floor((until - now) / DAY_MS);
  const date = certificate.notAfter.slice(0, 10);
  const findings: Finding[] = [];
  if (until <= now) findings.push({ status: 'red', why: `expired on ${date}`, key });
  else if (days < CERT_RED_DAYS) findings.push({ status: 'red', why: `expires in ${days} days (${date})`, key });
  if (issued && certificate.lastError !== null)
    findings.push({ status: 'amber', why: `the last renewal failed${error}`, key: 'ssl.provider' });
  if (findings.length === 0 && days < (issued ? ISSUED_AMBER_DAYS : CERT_AMBER_DAYS))
    findings.push({
      status: 'amber',
      why: issued ? `expires in ${days} days and is not renewed yet` : `expires in ${days} days: replace the file and reload`,
      key,
    });
  const how = issued ? `renewed by ${certificate.source}` : 'a manual certificate';
  return item(id, title, findings, `valid for ${days} more days (until ${date}), ${how}`, key);
}

/** Header name (lower case) -> value, of what every response gets. */
const headersOf = (policy: HeaderPolicy, https: boolean): Map<string, string> =>
  new Map([...policy.add, ...(https ? policy.addOverHttps : [])].map(([name, value]) => [name.toLowerCase(), value]));

/**
 * Every response-header policy in force: the server's, then each vhost's own,
 * with the prefix of the keys that set it and how a line names it.
 */
function policies(config: CompiledConfig): { policy: HeaderPolicy; prefix: string; where: string }[] {
  const list = [{ policy: config.responseHeaders, prefix: 'security.headers', where: '' }];
  config.vhosts.forEach((vhost, i) => {
    if (vhost.responseHeaders !== null)
      list.push({ policy: vhost.responseHeaders, prefix: `vhosts[${i}].headers`, where: `${vhost.domains[0]}: ` });
  });
  return list;
}

/** Findings of one policy; `where` names a vhost ("" for the server's). */
function headerFindings(policy: HeaderPolicy, prefix: string, where: string): Finding[] {
  const headers = headersOf(policy, false);
  const findings: Finding[] = [];
  const csp = headers.get('content-security-policy');
  const directive = (name: string): string | undefined =>
    csp
      ?.split(';')
      .map((part) => part.trim())
      .find((part) => part.toLowerCase().startsWith(`${name} `) || part.toLowerCase() === name);
  if (csp === undefined && headers.has('content-security-policy-report-only'))
    findings.push({ status: 'amber', why: `${where}CSP is report-only: nothing is blocked`, key: `${prefix}.csp_report_only` });
  else if (csp === undefined) findings.push({ status: 'red', why: `${where}no Content-Security-Policy`, key: `${prefix}.csp_enabled` });
  else if ((directive('script-src') ?? directive('default-src') ?? '').includes("'unsafe-inline'"))
    findings.push({
      status: 'amber',
      why: `${where}CSP lets inline scripts run ('unsafe-inline'), so injected markup can execute`,
      key: `${prefix}.csp_directives`,
    });
  if (headers.get('x-content-type-options') !== 'nosniff')
    findings.push({ status: 'red', why: `${where}no X-Content-Type-Options: nosniff`, key: `${prefix}.content_type_options` });
  if (!headers.has('x-frame-options') && directive('frame-ancestors') === undefined)
    findings.push({ status: 'red', why: `${where}pages can be framed by any site (clickjacking)`, key: `${prefix}.frame_options` });
  const xss = headers.get('x-xss-protection');
  if (xss !== undefined && xss.trim() !== '0')
    findings.push({
      status: 'amber',
      why: `${where}X-XSS-Protection: ${xss} turns on the legacy XSS filter, which OWASP advises against ("0" or "")`,
      key: `${prefix}.xss_protection`,
    });
  if (!headers.has('referrer-policy'))
    findings.push({ status: 'amber', why: `${where}no Referrer-Policy: full URLs leak to other sites`, key: `${prefix}.referrer_policy` });
  return findings;
}

function securityHeaders(config: CompiledConfig): ChecklistItem {
  const [server, ...vhosts] = policies(config);
  const findings = headerFindings(server!.policy, server!.prefix, '');
  const known = new Set(findings.map((finding) => finding.why));
  for (const { policy, prefix, where } of vhosts) {
    // A vhost repeats the server's weaknesses it inherits; only its own are news.
    for (const finding of headerFindings(policy, prefix, where)) if (!known.has(finding.why.slice(where.length))) findings.push(finding);
  }
  return item(
    'headers',
    'Security headers',
    findings,
    'CSP, nosniff, frame options and a referrer policy on every answer',
    'security.headers',
  );
}

function hsts(config: CompiledConfig): ChecklistItem {
  const title = 'HSTS';
  if (config.tls === null)
    return item('hsts', title, [{ ...NO_TLS, why: 'no HTTPS listener: browsers cannot be told to insist on HTTPS' }], '', '');
  const findings: Finding[] = [];
  let maxAge = Infinity;
  for (const { policy, prefix } of policies(config)) {
    const value = headersOf(policy, true).get('strict-transport-security');
    if (value === undefined) {
      findings.push({ status: 'red', why: 'HTTPS answers carry no Strict-Transport-Security', key: `${prefix}.hsts_enabled` });
      continue;
    }
    const age = Number(/max-age=(\d+)/i.exec(value)?.[1] ?? 0);
    maxAge = Math.min(maxAge, age);
    if (age < HSTS_MIN_MAX_AGE_S)
      findings.push({ status: 'amber', why: `max-age ${age} s is under a year (OWASP: 31536000)`, key: `${prefix}.hsts_max_age` });
  }
  return item('hsts', title, findings, `Strict-Transport-Security on HTTPS answers, max-age ${maxAge} s`, 'security.headers.hsts_enabled');
}

function enforceHttps(config: CompiledConfig): ChecklistItem {
  const title = 'HTTP redirected to HTTPS';
  if (config.tls === null) return item('enforce_https', title, [NO_TLS], '', '');
  const findings: Finding[] = config.tls.enforceHttps
    ? []
    : [{ status: 'red', why: 'plain HTTP serves pages too: a network attacker can read and change them', key: 'security.enforce_https' }];
  return item('enforce_https', title, findings, 'plain HTTP answers 301/308 to HTTPS (ACME challenges excepted)', 'security.enforce_https');
}

function rateLimiting(config: CompiledConfig): ChecklistItem {
  const limit = config.rateLimit;
  const findings: Finding[] =
    limit === null
      ? [{ status: 'red', why: 'off: one client may send requests as fast as it can', key: 'security.rate_limiting.enabled' }]
      : [];
  const ok = limit === null ? '' : `${limit.requestsPerSecond} requests/s per client, bursts of ${limit.burst}, for the whole server`;
  return item('rate_limiting', 'Rate limiting', findings, ok, 'security.rate_limiting.requests_per_second');
}

function ddosLimits(config: CompiledConfig): ChecklistItem {
  const { limits, timeouts, access } = config;
  const findings: Finding[] = [];
  if (timeouts.minDataRateBytesPerSec === 0)
    findings.push({ status: 'red', why: 'min_data_rate is 0: slowloris clients are never cut', key: 'security.timeouts.min_data_rate' });
  if (limits.maxConnectionsPerIp >= limits.maxConnections)
    findings.push({
      status: 'amber',
      why: `one client may hold all ${limits.maxConnections} connections`,
      key: 'security.limits.max_connections_per_ip',
    });
  if (access.banAfterBreaches === 0)
    findings.push({ status: 'amber', why: 'clients breaching the limits are never banned', key: 'security.ddos.ban_after_breaches' });
  return item(
    'ddos',
    'DDoS limits',
    findings,
    `${limits.maxConnections} connections, ${limits.maxConnectionsPerIp} and ${limits.connectionRatePerIp} new/s per client; ` +
      `heads slower than ${timeouts.minDataRateBytesPerSec} B/s cut; ban after ${access.banAfterBreaches} breaches`,
    'security.limits.max_connections_per_ip',
  );
}

const NO_CAPABILITIES = /^0+$/;
const mib = (bytes: number): string => `${Math.round(bytes / 1048576)} MiB`;

function processIsolation(config: CompiledConfig, workers: readonly ProcessFacts[]): ChecklistItem {
  const iso = config.isolation;
  const findings: Finding[] = [];
  const red = (why: string, key: string): number => findings.push({ status: 'red', why, key });
  const amber = (why: string, key: string): number => findings.push({ status: 'amber', why, key });
  if (iso.seccomp === 'off') red('seccomp is off: a worker may make any system call', 'process.isolation.enable_seccomp');
  else if (iso.seccomp === 'errno')
    amber('a forbidden system call returns an error instead of killing the worker', 'process.isolation.seccomp_default_action');
  // Without a chroot the workers are jailed all the same, in an empty jail of the master's (state_dir/jail).
  const jail = iso.chroot ?? implicitJail(config);
  if (iso.runAsUser !== null)
    amber(`every worker runs as ${iso.runAsUser}: one uid they share with any other process of that user`, 'process.isolation.run_as_user');
  if (iso.cgroupParent === null) amber('no cgroup per worker: no memory, CPU or pids limit', 'process.isolation.enable_cgroups');
  const seen = workers.filter((worker) => worker.uid !== null);
  if (seen.length === 0) amber('no serving worker to inspect', 'server.workers');
  for (const worker of seen) {
    const who = `worker ${worker.pid}`;
    if (worker.uid === 0 || worker.euid === 0) red(`${who} runs as root`, 'process.isolation.run_as_user');
    if (worker.capEffective !== null && !NO_CAPABILITIES.test(worker.capEffective))
      red(`${who} holds capabilities (CapEff ${worker.capEffective})`, 'process.isolation.run_as_user');
    if (worker.noNewPrivs !== true) red(`${who} may gain privileges (no_new_privs is off)`, '');
    if (iso.seccomp !== 'off' && worker.seccomp !== 'filter')
      red(`${who} runs without its seccomp filter`, 'process.isolation.enable_seccomp');
    if (worker.root !== jail)
      red(`${who} has ${worker.root ?? 'an unknown root'} as its root, not the jail ${jail}`, 'process.isolation.chroot');
    if (iso.cgroupParent !== null) {
      const cgroup = worker.cgroup;
      if (cgroup === null || !cgroup.path.startsWith(`${iso.cgroupParent}/`))
        red(`${who} is not in a cgroup under ${iso.cgroupParent}`, 'process.isolation.cgroup_parent');
      else {
        if (iso.maxMemoryBytes !== null && cgroup.memoryMaxBytes === null)
          red(`${who} has no memory limit`, 'process.isolation.max_memory');
        if (iso.maxPids !== null && cgroup.pidsMax === null) red(`${who} has no pids limit`, 'process.isolation.max_pids');
      }
    }
  }
  const first = seen[0];
  const uids = [...new Set(seen.map((worker) => worker.uid))].join(', ');
  const limits =
    first?.cgroup == null
      ? ''
      : `, cgroup v${first.cgroup.version} memory ${first.cgroup.memoryMaxBytes === null ? 'unlimited' : mib(first.cgroup.memoryMaxBytes)}` +
        `, pids ${first.cgroup.pidsMax ?? 'unlimited'}`;
  return item(
    'isolation',
    'Process isolation',
    findings,
    `${seen.length} workers as uid ${uids}, seccomp filter (${iso.seccomp}), no_new_privs, no capabilities, jail ${jail}${limits}`,
    'process.isolation',
  );
}

function auditLog(config: CompiledConfig, failing: boolean): ChecklistItem {
  const audit = config.audit;
  const findings: Finding[] = [];
  if (!audit.enabled) findings.push({ status: 'red', why: 'the audit log is off', key: 'security.audit.enabled' });
  else if (!audit.logSecurityEvents)
    findings.push({ status: 'red', why: 'security events are not written', key: 'security.audit.log_security_events' });
  if (audit.enabled && failing)
    findings.push({ status: 'red', why: `${audit.logFile} cannot be written (fix it, then SIGUSR1)`, key: 'security.audit.log_file' });
  if (audit.enabled && (!audit.logAdminActions || !audit.logConfigurationChanges || !audit.logAuthentication))
    findings.push({
      status: 'amber',
      why: 'admin actions, configuration changes or logins are left out',
      key: !audit.logAdminActions
        ? 'security.audit.log_admin_actions'
        : !audit.logConfigurationChanges
          ? 'security.audit.log_configuration_changes'
          : 'security.audit.log_authentication',
    });
  const where = audit.logFile === null ? 'the main log' : audit.logFile;
  return item('audit', 'Audit log', findings, `on, writing to ${where}`, 'security.audit.log_file');
}

function intrusionDetection(config: CompiledConfig): ChecklistItem {
  const ids = config.ids;
  const findings: Finding[] =
    ids === null ? [{ status: 'red', why: 'off: attacks in requests go unseen', key: 'security.ids.enabled' }] : [];
  const ok =
    ids === null
      ? ''
      : `built-in detectors and ${ids.rules.length} rules of your own; alert at score ${ids.alertThreshold}, ban at ${ids.blockThreshold}`;
  return item('ids', 'Intrusion detection', findings, ok, 'security.ids.rules');
}

const isLoopback = (address: string): boolean => address.startsWith('127.') || address === '::1';

function dashboardExposure(config: CompiledConfig): ChecklistItem {
  const dashboard = config.server.dashboard;
  const title = 'Security dashboard';
  if (dashboard === null) return item('dashboard', title, [], 'off', 'server.dashboard.enabled');
  const where = dashboard.address.includes(':') ? `[${dashboard.address}]:${dashboard.port}` : `${dashboard.address}:${dashboard.port}`;
  const findings: Finding[] = isLoopback(dashboard.address)
    ? []
    : [{ status: 'amber', why: `on ${where}: the token crosses the network in clear (use an SSH tunnel)`, key: 'server.dashboard.listen' }];
  return item('dashboard', title, findings, `on ${where}, loopback only: reach it through an SSH tunnel`, 'server.dashboard.listen');
}
