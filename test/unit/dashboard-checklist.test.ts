/**
 * The security dashboard's checklist (issue 17): every item green, amber and
 * red from real configs (TOML through the load path `start` uses) and host
 * facts as the master reads them from /proc, with the key that changes it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import type { CompiledConfig } from '../../src/config/types.js';
import { evaluateChecklist, type CertificateFacts, type ChecklistItem, type HostFacts } from '../../src/master/dashboard/checklist.js';
import type { ProcessFacts } from '../../src/master/dashboard/host-facts.js';
import { TestCa } from '../support/test-ca.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-checklist-'));
const JAIL = path.join(dir, 'jail');
const NOW = Date.parse('2026-06-01T12:00:00Z');
const DAY = 86_400_000;
let files = 0;
let tls = '';

/** The base every case starts from: sandboxed workers in a jail, one static vhost. */
function config(toml: string, options: { jail?: boolean } = {}): CompiledConfig {
  const file = path.join(dir, `config-${files++}.toml`);
  const isolation = options.jail === false ? '' : `chroot = "${JAIL}"\n`;
  const body = toml.includes('[process.isolation]')
    ? toml.replace('[process.isolation]\n', `[process.isolation]\ncgroup_parent = "miwidothttp.slice"\n${isolation}`)
    : `${toml}\n[process.isolation]\ncgroup_parent = "miwidothttp.slice"\n${isolation}`;
  writeFileSync(file, `[server]\nstate_dir = "${dir}/state"\n\n${body}\n\n[[vhosts]]\ndomains = ["a.test"]\nroot = "${JAIL}"\n`);
  const loaded = loadConfig(file, {}, false);
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  return loaded.config;
}

const ISOLATION = `[process.isolation]\ncgroup_parent = "miwidothttp.slice"\nchroot = "${JAIL}"\n`;

/** A config written whole after [server] (its own isolation and vhosts). */
function whole(toml: string): CompiledConfig {
  const file = path.join(dir, `config-${files++}.toml`);
  writeFileSync(file, `[server]\nstate_dir = "${dir}/state"\n\n${toml}`);
  const loaded = loadConfig(file, {}, false);
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  return loaded.config;
}

/** A worker as the helper leaves it: nobody, seccomp filter, no_new_privs, no capabilities, jailed, in its cgroup. */
function worker(overrides: Partial<ProcessFacts> = {}): ProcessFacts {
  return {
    pid: 4242,
    uid: 65534,
    euid: 65534,
    gid: 65534,
    seccomp: 'filter',
    noNewPrivs: true,
    capEffective: '0000000000000000',
    root: JAIL,
    cgroup: { version: 1, path: 'miwidothttp.slice/worker-1-1', memoryMaxBytes: 512 * 1048576, cpuMaxPercent: null, pidsMax: 512 },
    ...overrides,
  };
}

function host(overrides: Partial<HostFacts> = {}): HostFacts {
  return { now: NOW, workers: [worker(), worker({ pid: 4243 })], certificates: [], auditLogFailing: false, ...overrides };
}

function itemOf(compiled: CompiledConfig, id: string, facts: HostFacts = host()): ChecklistItem {
  const found = evaluateChecklist(compiled, facts).find((entry) => entry.id === id);
  assert.ok(found, `no item ${id}`);
  return found;
}

function expect(found: ChecklistItem, status: ChecklistItem['status'], key: string, why?: RegExp): void {
  assert.equal(found.status, status, `${found.id}: ${found.why}`);
  assert.equal(found.key, key, `${found.id}: ${found.why}`);
  if (why) assert.match(found.why, why);
  assert.ok(!found.why.includes('\n'), 'one line');
}

/** Headers that pass every check: a CSP without inline script, nosniff, DENY, a referrer policy, no legacy XSS filter. */
const GOOD_HEADERS = `[security.headers]\ncsp_directives = "default-src 'self'"\nxss_protection = "0"\n`;

before(() => {
  const ca = new TestCa(dir);
  const leaf = ca.issue('a', ['a.test']);
  tls = `[ssl.domains."a.test"]\ncert_file = "${leaf.cert}"\nkey_file = "${leaf.key}"\n`;
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('checklist: TLS, HSTS and HTTPS', () => {
  it('TLS is red without an HTTPS listener, green with the default policy or TLS 1.3 only', () => {
    expect(itemOf(config(''), 'tls'), 'red', 'ssl.domains', /in clear/);
    expect(itemOf(config(tls), 'tls'), 'green', 'security.min_tls_version', /TLS 1\.2 and 1\.3/);
    expect(itemOf(config(`[security]\nmin_tls_version = "1.3"\n${tls}`), 'tls'), 'green', 'security.min_tls_version', /TLS 1\.3 only/);
    const chosen = config(`[security]\nciphers = ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]\n${tls}`);
    expect(itemOf(chosen, 'tls'), 'green', 'security.ciphers', /1 chosen suites/);
  });

  it('HSTS is red without HTTPS or when off, amber under a year, green otherwise', () => {
    expect(itemOf(config(''), 'hsts'), 'red', 'ssl.domains');
    expect(itemOf(config(`[security.headers]\nhsts_enabled = false\n${tls}`), 'hsts'), 'red', 'security.headers.hsts_enabled');
    expect(itemOf(config(`[security.headers]\nhsts_max_age = 86400\n${tls}`), 'hsts'), 'amber', 'security.headers.hsts_max_age', /86400/);
    expect(itemOf(config(tls), 'hsts'), 'green', 'security.headers.hsts_enabled', /max-age 31536000/);
  });

  it('a vhost that turns HSTS off is named by its key', () => {
    const compiled = whole(
      `${tls}${ISOLATION}[[vhosts]]\ndomains = ["a.test"]\nroot = "${JAIL}"\n[vhosts.headers]\nhsts_enabled = false\n`,
    );
    expect(itemOf(compiled, 'hsts'), 'red', 'vhosts[0].headers.hsts_enabled');
  });

  it('enforce_https is red without HTTPS or when off, green when on', () => {
    expect(itemOf(config(''), 'enforce_https'), 'red', 'ssl.domains');
    expect(itemOf(config(tls), 'enforce_https'), 'red', 'security.enforce_https', /plain HTTP/);
    expect(itemOf(config(`[security]\nenforce_https = true\n${tls}`), 'enforce_https'), 'green', 'security.enforce_https');
  });
});

describe('checklist: certificate expiry, one item per name', () => {
  const cert = (overrides: Partial<CertificateFacts>): CertificateFacts => ({
    name: 'a.test',
    source: 'manual',
    notAfter: new Date(NOW + 90 * DAY).toISOString(),
    lastError: null,
    ...overrides,
  });
  const check = (facts: CertificateFacts): ChecklistItem => itemOf(config(tls), 'certificate:a.test', host({ certificates: [facts] }));
  const manualKey = 'ssl.domains."a.test".cert_file';

  it('green with time left, saying how long', () => {
    expect(check(cert({})), 'green', manualKey, /valid for 90 more days/);
    expect(check(cert({ source: 'acme' })), 'green', 'ssl.renewal_days_before', /renewed by acme/);
  });

  it('amber for a manual certificate within 30 days, an issued one within 14 or after a failed renewal', () => {
    expect(check(cert({ notAfter: new Date(NOW + 20 * DAY).toISOString() })), 'amber', manualKey, /expires in 20 days/);
    expect(check(cert({ source: 'acme', notAfter: new Date(NOW + 20 * DAY).toISOString() })), 'green', 'ssl.renewal_days_before');
    expect(check(cert({ source: 'acme', notAfter: new Date(NOW + 10 * DAY).toISOString() })), 'amber', 'ssl.renewal_days_before');
    expect(check(cert({ source: 'acme', lastError: 'DNS problem: NXDOMAIN' })), 'amber', 'ssl.provider', /NXDOMAIN/);
  });

  it('red within 7 days, expired, or never obtained', () => {
    expect(check(cert({ notAfter: new Date(NOW + 3 * DAY).toISOString() })), 'red', manualKey, /expires in 3 days/);
    expect(check(cert({ notAfter: new Date(NOW - DAY).toISOString() })), 'red', manualKey, /expired on 2026-05-31/);
    expect(check(cert({ source: 'cloudflare', notAfter: null, lastError: 'HTTP 403' })), 'red', 'ssl.provider', /not obtained.*HTTP 403/);
  });
});

describe('checklist: security headers', () => {
  it('amber with the default CSP, which allows inline scripts', () => {
    expect(itemOf(config(''), 'headers'), 'amber', 'security.headers.csp_directives', /unsafe-inline/);
  });

  it('amber for the legacy X-XSS-Protection filter, a report-only CSP or no referrer policy', () => {
    const xss = config(`[security.headers]\ncsp_directives = "default-src 'self'"\nxss_protection = "1; mode=block"\n`);
    expect(itemOf(xss, 'headers'), 'amber', 'security.headers.xss_protection', /OWASP/);
    expect(itemOf(config(`${GOOD_HEADERS}csp_report_only = true\n`), 'headers'), 'amber', 'security.headers.csp_report_only');
    expect(itemOf(config(`${GOOD_HEADERS}referrer_policy = ""\n`), 'headers'), 'amber', 'security.headers.referrer_policy');
  });

  it('red without a CSP, without nosniff, or when pages can be framed', () => {
    expect(itemOf(config(`${GOOD_HEADERS}csp_enabled = false\n`), 'headers'), 'red', 'security.headers.csp_enabled');
    expect(itemOf(config(`${GOOD_HEADERS}content_type_options = ""\n`), 'headers'), 'red', 'security.headers.content_type_options');
    expect(itemOf(config(`${GOOD_HEADERS}frame_options = ""\n`), 'headers'), 'red', 'security.headers.frame_options', /framed/);
  });

  it('green with every header set; frame-ancestors stands in for X-Frame-Options', () => {
    expect(itemOf(config(GOOD_HEADERS), 'headers'), 'green', 'security.headers');
    const ancestors = `[security.headers]\ncsp_directives = "default-src 'self'; frame-ancestors 'none'"\nxss_protection = ""\nframe_options = ""\n`;
    expect(itemOf(config(ancestors), 'headers'), 'green', 'security.headers');
  });

  it('names a vhost whose own headers are weaker, by its key and domain', () => {
    const compiled = whole(
      `${GOOD_HEADERS}${ISOLATION}[[vhosts]]\ndomains = ["b.test"]\nroot = "${JAIL}"\n[vhosts.headers]\ncontent_type_options = ""\n`,
    );
    expect(itemOf(compiled, 'headers'), 'red', 'vhosts[0].headers.content_type_options', /^b\.test: /);
  });
});

describe('checklist: limits', () => {
  it('rate limiting is red when off, green when on', () => {
    expect(itemOf(config(''), 'rate_limiting'), 'red', 'security.rate_limiting.enabled');
    const on = config(`[security.rate_limiting]\nenabled = true\nrequests_per_second = 50\nburst_size = 100\n`);
    expect(itemOf(on, 'rate_limiting'), 'green', 'security.rate_limiting.requests_per_second', /50 requests\/s per client, bursts of 100/);
  });

  it('DDoS limits are green by default, red without a slowloris floor, amber when one client may take all or breaches never ban', () => {
    expect(itemOf(config(''), 'ddos'), 'green', 'security.limits.max_connections_per_ip', /100000 connections/);
    expect(itemOf(config(`[security.timeouts]\nmin_data_rate = 0\n`), 'ddos'), 'red', 'security.timeouts.min_data_rate');
    const perIp = config(`[security.limits]\nmax_connections = 50\nmax_connections_per_ip = 50\n`);
    expect(itemOf(perIp, 'ddos'), 'amber', 'security.limits.max_connections_per_ip', /all 50/);
    expect(itemOf(config(`[security.ddos]\nban_after_breaches = 0\n`), 'ddos'), 'amber', 'security.ddos.ban_after_breaches');
  });
});

describe('checklist: process isolation, from the workers /proc shows', () => {
  it('green when every worker is unprivileged, filtered, jailed and limited', () => {
    expect(itemOf(config(''), 'isolation'), 'green', 'process.isolation', /2 workers as uid 65534.*memory 512 MiB, pids 512/);
  });

  it('red for a worker running as root or holding capabilities', () => {
    expect(
      itemOf(config(''), 'isolation', host({ workers: [worker({ uid: 0, euid: 0 })] })),
      'red',
      'process.isolation.run_as_user',
      /as root/,
    );
    const caps = host({ workers: [worker({ capEffective: '0000000000000400' })] });
    expect(itemOf(config(''), 'isolation', caps), 'red', 'process.isolation.run_as_user', /CapEff 0000000000000400/);
  });

  it('red for a worker without no_new_privs or its seccomp filter, outside its jail or its limits', () => {
    expect(itemOf(config(''), 'isolation', host({ workers: [worker({ noNewPrivs: false })] })), 'red', '', /no_new_privs/);
    const unfiltered = host({ workers: [worker({ seccomp: 'off' })] });
    expect(itemOf(config(''), 'isolation', unfiltered), 'red', 'process.isolation.enable_seccomp', /seccomp filter/);
    expect(itemOf(config(''), 'isolation', host({ workers: [worker({ root: '/' })] })), 'red', 'process.isolation.chroot', /not the jail/);
    const unlimited = host({ workers: [worker({ cgroup: { ...worker().cgroup!, memoryMaxBytes: null } })] });
    expect(itemOf(config(''), 'isolation', unlimited), 'red', 'process.isolation.max_memory');
    const elsewhere = host({ workers: [worker({ cgroup: { ...worker().cgroup!, path: 'user.slice' } })] });
    expect(itemOf(config(''), 'isolation', elsewhere), 'red', 'process.isolation.cgroup_parent');
  });

  it('red with seccomp off; amber with seccomp errno, one shared run_as_user, no cgroups or no worker to look at', () => {
    const off = config(`[process.isolation]\nenable_seccomp = false\n`);
    expect(itemOf(off, 'isolation', host({ workers: [worker({ seccomp: 'off' })] })), 'red', 'process.isolation.enable_seccomp');
    const errno = config(`[process.isolation]\nseccomp_default_action = "errno"\n`);
    expect(itemOf(errno, 'isolation'), 'amber', 'process.isolation.seccomp_default_action');
    // Without a chroot the jail is the master's own, empty one: a worker outside it is red.
    const unjailed = config('', { jail: false });
    expect(itemOf(unjailed, 'isolation', host({ workers: [worker({ root: '/' })] })), 'red', 'process.isolation.chroot', /state\/jail/);
    const shared = config(`[process.isolation]\nrun_as_user = "www-data"\n`);
    expect(itemOf(shared, 'isolation'), 'amber', 'process.isolation.run_as_user', /one uid they share/);
    const noCgroups = whole(
      `[process.isolation]\nenable_cgroups = false\nchroot = "${JAIL}"\n[[vhosts]]\ndomains = ["a.test"]\nroot = "${JAIL}"\n`,
    );
    expect(itemOf(noCgroups, 'isolation', host({ workers: [worker({ cgroup: null })] })), 'amber', 'process.isolation.enable_cgroups');
    expect(itemOf(config(''), 'isolation', host({ workers: [] })), 'amber', 'server.workers', /no serving worker/);
  });
});

describe('checklist: audit log, IDS and the dashboard itself', () => {
  it('the audit log is green when on, red when off, not writing security events or failing, amber leaving out admin actions', () => {
    expect(itemOf(config(''), 'audit'), 'green', 'security.audit.log_file', /the main log/);
    expect(itemOf(config(`[security.audit]\nenabled = false\n`), 'audit'), 'red', 'security.audit.enabled');
    expect(itemOf(config(`[security.audit]\nlog_security_events = false\n`), 'audit'), 'red', 'security.audit.log_security_events');
    const file = config(`[security.audit]\nlog_file = "${dir}/audit.log"\n`);
    expect(itemOf(file, 'audit'), 'green', 'security.audit.log_file', /audit\.log/);
    expect(itemOf(file, 'audit', host({ auditLogFailing: true })), 'red', 'security.audit.log_file', /cannot be written/);
    expect(itemOf(config(`[security.audit]\nlog_admin_actions = false\n`), 'audit'), 'amber', 'security.audit.log_admin_actions');
  });

  it('the IDS is red when off, green with its rules counted', () => {
    expect(itemOf(config(''), 'ids'), 'red', 'security.ids.enabled');
    const on = config(`[security.ids]\nenabled = true\n[[security.ids.rules]]\nname = "no-wp"\npattern = "wp-login"\n`);
    expect(itemOf(on, 'ids'), 'green', 'security.ids.rules', /1 rules of your own/);
  });

  it('the dashboard is green on loopback, amber on another address', () => {
    const token = 'a'.repeat(64);
    const loopback = config(`[server.dashboard]\nenabled = true\ntoken = "${token}"\n`);
    expect(itemOf(loopback, 'dashboard'), 'green', 'server.dashboard.listen', /127\.0\.0\.1:9146/);
    const open = config(`[server.dashboard]\nenabled = true\nlisten = "0.0.0.0:9146"\ntoken = "${token}"\n`);
    expect(itemOf(open, 'dashboard'), 'amber', 'server.dashboard.listen', /in clear/);
  });

  it('lists the items in a fixed order, each once', () => {
    const ids = evaluateChecklist(
      config(tls),
      host({ certificates: [{ name: 'a.test', source: 'manual', notAfter: null, lastError: null }] }),
    ).map((entry) => entry.id);
    assert.deepEqual(ids, [
      'tls',
      'certificate:a.test',
      'hsts',
      'enforce_https',
      'headers',
      'rate_limiting',
      'ddos',
      'isolation',
      'audit',
      'ids',
      'dashboard',
    ]);
  });
});
