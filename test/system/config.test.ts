/**
 * Config: the shipped files, defaults, one line per problem naming the key
 * path and line, ${VAR} interpolation, and `check` through the real CLI.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { indexKeyLines } from '../../src/config/key-lines.js';
import { cli, ROOT, tempDir } from '../support/harness.js';

const dir = tempDir();
let counter = 0;
function write(text: string): string {
  const file = path.join(dir, `c${counter++}.toml`);
  writeFileSync(file, text);
  return file;
}

function errorsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  const file = write(text);
  const result = loadConfig(file, env);
  assert.equal(result.ok, false, 'expected the config to be refused');
  return result.ok ? [] : result.errors.map((line) => line.slice(file.length + 2));
}

describe('shipped configs', () => {
  it('config/miwidothttp.toml is valid and documents every default', () => {
    const result = loadConfig(path.join(ROOT, 'config/miwidothttp.toml'));
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    const defaults = loadConfig(write('[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n'));
    assert.ok(defaults.ok);
    // The reference file states the defaults: compiling it gives the same limits and timeouts.
    assert.deepEqual(result.config.limits, defaults.config.limits);
    assert.deepEqual(result.config.timeouts, defaults.config.timeouts);
    assert.deepEqual(result.config.responseHeaders, defaults.config.responseHeaders);
  });

  it('config/production.toml is valid: ACME for its vhost names', () => {
    const result = loadConfig(path.join(ROOT, 'config/production.toml'));
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.deepEqual(result.config.issuance?.names, ['example.com', 'www.example.com']);
  });

  it('the built-in default serves the bundled page on 127.0.0.1:8080', () => {
    const result = loadConfig(null);
    assert.ok(result.ok);
    assert.deepEqual(
      result.config.listeners.map((l) => l.id),
      ['http 127.0.0.1:8080'],
    );
    assert.equal(result.config.vhosts[0]!.domains[0], '*');
    assert.match(result.config.vhosts[0]!.hostRoot!, /share\/www$/);
    assert.equal(result.config.isolation.chroot, result.config.vhosts[0]!.hostRoot, 'the bundled site is the jail');
    assert.equal(result.config.vhosts[0]!.root, '/');
  });
});

describe('documented defaults', () => {
  const result = loadConfig(write('[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n'));
  assert.ok(result.ok);
  const config = result.config;
  const cases: [string, number, number][] = [
    ['max_header_size', config.limits.maxHeaderBytes, 8192],
    ['max_headers', config.limits.maxHeaders, 100],
    ['max_header_name_len', config.limits.maxHeaderNameBytes, 256],
    ['max_header_value_len', config.limits.maxHeaderValueBytes, 4096],
    ['max_body_size', config.limits.maxBodyBytes, 104857600],
    ['max_multipart_size', config.limits.maxMultipartBytes, 524288000],
    ['max_json_depth', config.limits.maxJsonDepth, 64],
    ['max_form_fields', config.limits.maxFormFields, 1000],
    ['max_url_length', config.limits.maxUrlBytes, 8192],
    ['max_connections_per_ip', config.limits.maxConnectionsPerIp, 100],
    ['connection_rate_per_ip', config.limits.connectionRatePerIp, 10],
    ['max_request_per_connection', config.limits.maxRequestsPerConnection, 1000],
    ['max_chunk_size', config.limits.maxChunkBytes, 8192],
    ['max_concurrent_streams', config.limits.maxConcurrentStreams, 100],
    ['header_read_timeout', config.timeouts.headerReadTimeoutMs, 10_000],
    ['body_read_timeout', config.timeouts.bodyReadTimeoutMs, 30_000],
    ['write_timeout', config.timeouts.writeTimeoutMs, 30_000],
    ['idle_timeout', config.timeouts.idleTimeoutMs, 60_000],
    ['request_timeout', config.timeouts.requestTimeoutMs, 120_000],
    ['shutdown_timeout', config.server.shutdownTimeoutMs, 30_000],
  ];
  for (const [key, actual, expected] of cases) {
    it(`${key} defaults to the documented value`, () => assert.equal(actual, expected));
  }
  it('workers = 0 means one per CPU', () => assert.ok(config.server.workerCount >= 1));
  it('the control socket sits beside the pid file', () => assert.equal(config.server.controlSocket, '/run/miwidothttp.sock'));
});

describe('one line per problem, naming the key', () => {
  const table: [string, string, RegExp][] = [
    ['unknown top-level key', 'colour = "blue"\n', /^colour: unknown key \(line 1\)$/],
    ['unknown nested key', '[security.limits]\nmax_body_szie = 10\n', /^security\.limits\.max_body_szie: unknown key \(line 2\)$/],
    ['wrong type', '[server]\nhttp_port = "80"\n', /^server\.http_port: expected number, received string \(line 2\)$/],
    ['out of range', '[server]\nhttp_port = 70000\n', /^server\.http_port: .*65535.* \(line 2\)$/],
    ['negative size', '[security.limits]\nmax_body_size = -1\n', /^security\.limits\.max_body_size: .* \(line 2\)$/],
    ['bad enum', '[security.headers]\nframe_options = "ALLOW"\n', /^security\.headers\.frame_options: .*DENY.* \(line 2\)$/],
    ['bad size string', '[process.isolation]\nmax_memory = "lots"\n', /^process\.isolation\.max_memory: .*size.* \(line 2\)$/],
    [
      'bad CIDR',
      '[security.proxy_protocol]\ntrusted_proxies = ["10.0.0.0/33"]\n',
      /^security\.proxy_protocol\.trusted_proxies\[0\]: not an IP address or CIDR.* \(line 2\)$/,
    ],
    [
      'bad regex',
      '[[security.ids.rules]]\nname = "x"\npattern = "(("\n',
      /^security\.ids\.rules\[0\]\.pattern: not a valid regular expression \(line 3\)$/,
    ],
    ['bad bind address', '[server]\nbind_address = "localhost"\n', /^server\.bind_address: must be an IPv4 or IPv6 address \(line 2\)$/],
    ['vhost without root', '[[vhosts]]\ndomains = ["a.example"]\n', /^vhosts\[0\]\.root: required for a static vhost/],
    ['bad domain', '[[vhosts]]\ndomains = ["a b"]\nroot = "/srv"\n', /^vhosts\[0\]\.domains\[0\]: expected a host name.* \(line 2\)$/],
    ['relative root', '[[vhosts]]\ndomains = ["*"]\nroot = "srv"\n', /^vhosts\[0\]\.root: must be an absolute path \(line 3\)$/],
    [
      'bad backend type',
      '[[vhosts]]\ndomains = ["*"]\n[vhosts.backend]\ntype = "teleport"\n',
      /^vhosts\[0\]\.backend\.type: .* \(line 4\)$/,
    ],
    [
      'proxy without target',
      '[[vhosts]]\ndomains = ["*"]\n[vhosts.backend]\ntype = "proxy"\n',
      /^vhosts\[0\]\.backend\.target: set exactly one of target and targets/,
    ],
    [
      'proxy target not http',
      '[[vhosts]]\ndomains = ["*"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "file:///etc/passwd"\n',
      /^vhosts\[0\]\.backend\.target: .* \(line 5\)$/,
    ],
    [
      'second vhost',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/a"\n[[vhosts]]\ndomains = ["b"]\nroot = "/b"\nlisting = true\n',
      /^vhosts\[1\]\.listing: unknown key \(line 7\)$/,
    ],
    [
      'conflicting aliases',
      '[security.timeouts]\nheader_read_timeout = 10\nheader_timeout = 20\n',
      /^security\.timeouts\.header_timeout: conflicts with security\.timeouts\.header_read_timeout/,
    ],
    [
      'keepalive above idle',
      '[security.timeouts]\nidle_timeout = 10\nkeepalive_timeout = 20\n',
      /^security\.timeouts\.keepalive_timeout: must not exceed/,
    ],
    [
      'root outside chroot',
      '[process.isolation]\nchroot = "/var/jail"\n[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n',
      /^vhosts\[0\]\.root: \/srv lies outside process\.isolation\.chroot/,
    ],
    [
      'unimplemented feature',
      '[server.http3]\nenabled = true\n',
      /^server\.http3\.enabled: HTTP\/3 is not implemented in this version.* \(line 2\)$/,
    ],
    [
      'metrics on the serving port',
      '[server.metrics]\nenabled = true\nport = 8080\n',
      /^server\.metrics\.port: 127\.0\.0\.1:8080 is also server\.http_port/,
    ],
    [
      'vhost header override of an unknown key',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[vhosts.headers]\nframe_option = "DENY"\n',
      /^vhosts\[0\]\.headers\.frame_option: unknown key \(line 5\)$/,
    ],
    [
      'manual certificate key',
      '[ssl.domains."example.com"]\ncert_file = "/c"\nkey_fil = "/k"\n',
      /^ssl\.domains\."example\.com"\.key_fil: unknown key \(line 3\)$/,
    ],
    ['ACME without accepting the terms', '[ssl]\nprovider = "acme"\ndomains = ["a.example"]\n', /^ssl\.agree_tos: set to true to accept/],
    ['ACME with no names', '[ssl]\nprovider = "acme"\nagree_tos = true\n', /^ssl\.domains: no names to obtain from acme/],
    [
      'ACME wildcard without DNS',
      '[ssl]\nprovider = "acme"\nagree_tos = true\ndomains = ["*.a.example"]\n',
      /^ssl\.challenges\.dns_01_provider: \*\.a\.example can only be validated by DNS-01/,
    ],
    [
      'HTTP-01 on another port',
      '[ssl]\nprovider = "acme"\nagree_tos = true\ndomains = ["a.example"]\n[ssl.challenges]\nhttp_01_port = 80\n',
      /^ssl\.challenges\.http_01_port: must be server\.http_port \(8080\)/,
    ],
    [
      'exec DNS without a command',
      '[ssl]\nprovider = "acme"\nagree_tos = true\ndomains = ["a.example"]\n[ssl.challenges]\npreferred = ["dns-01"]\ndns_01_provider = "exec"\n',
      /^ssl\.challenges\.dns_01_command: the exec DNS provider needs/,
    ],
    [
      'DNS provider not built',
      '[ssl]\nprovider = "acme"\nagree_tos = true\ndomains = ["a.example"]\n[ssl.challenges]\ndns_01_provider = "route53"\n',
      /^ssl\.challenges\.dns_01_provider: route53 is not implemented in this version/,
    ],
    [
      'Origin CA without a token',
      '[ssl]\nprovider = "cloudflare"\ndomains = ["a.example"]\n',
      /^ssl\.api_token: Cloudflare Origin CA needs an API token/,
    ],
    [
      'Origin CA validity not offered',
      '[ssl]\nprovider = "cloudflare"\napi_token = "t"\nrequested_validity = 10\ndomains = ["a.example"]\n',
      /^ssl\.requested_validity: /,
    ],
    [
      'ACME over plain HTTP',
      '[ssl]\nprovider = "acme"\nagree_tos = true\nacme_server = "http://ca.example/dir"\ndomains = ["a.example"]\n',
      /^ssl\.acme_server: must be an https URL/,
    ],
    [
      'HTTP-01 answers elsewhere than where CAs ask',
      '[server]\nhttp_port = 80\n[ssl]\nprovider = "acme"\nagree_tos = true\ndomains = ["a.example"]\n[ssl.challenges]\nhttp_01_path = "/acme"\n',
      /^ssl\.challenges\.http_01_path: must be \/\.well-known\/acme-challenge/,
    ],
    ['the ACME path is the whole site', '[ssl.challenges]\nhttp_01_path = "/"\n', /^ssl\.challenges\.http_01_path: an absolute path below/],
    [
      'Origin CA token with a space',
      '[ssl]\nprovider = "cloudflare"\napi_token = "abc def"\ndomains = ["a.example"]\n',
      /^ssl\.api_token: is empty or has characters a token cannot have/,
    ],
    [
      'Cloudflare API over plain HTTP',
      '[ssl]\nprovider = "cloudflare"\napi_token = "abc"\ncloudflare_api_url = "http://api.example/client/v4"\ndomains = ["a.example"]\n',
      /^ssl\.cloudflare_api_url: .*not https/,
    ],
    [
      'a route path with traversal',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[[vhosts.routes]]\npath = "/api/../admin/"\n',
      /^vhosts\[0\]\.routes\[0\]\.path: no empty, "\." or "\.\." segments \(line 5\)$/,
    ],
    [
      'a route path with an escape',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[[vhosts.routes]]\npath = "/a%2fb"\n',
      /^vhosts\[0\]\.routes\[0\]\.path: an absolute path of/,
    ],
    [
      'a route routed twice',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[[vhosts.routes]]\npath = "/a/"\n[[vhosts.routes]]\npath = "/a/"\n',
      /^vhosts\[0\]\.routes\[1\]\.path: \/a\/ is routed twice/,
    ],
    [
      'a missing route root',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[[vhosts.routes]]\npath = "/x/"\nroot = "/nonexistent/miwidothttp-root"\n',
      /^vhosts\[0\]\.routes\[0\]\.root: \/nonexistent\/miwidothttp-root is not a directory \(line 6\)$/,
    ],
    [
      'an unreadable htpasswd',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[[vhosts.routes]]\npath = "/x/"\n[vhosts.routes.auth]\nhtpasswd = "/nonexistent/htpasswd"\n',
      /^vhosts\[0\]\.routes\[0\]\.auth\.htpasswd: \/nonexistent\/htpasswd: cannot read: ENOENT/,
    ],
    [
      'a domain claimed twice',
      '[[vhosts]]\ndomains = ["a.example"]\nroot = "/srv"\n[[vhosts]]\ndomains = ["b.example", "a.example"]\nroot = "/srv"\n',
      /^vhosts\[1\]\.domains\[1\]: "a\.example" is already claimed by vhosts\[0\]/,
    ],
    [
      'try_files on a proxy',
      '[[vhosts]]\ndomains = ["*"]\ntry_files = ["$uri"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "http://127.0.0.1:1"\n',
      /^vhosts\[0\]\.try_files: only for a static backend/,
    ],
    [
      'a try_files entry that climbs',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\ntry_files = ["$uri", "/../etc/passwd"]\n',
      /^vhosts\[0\]\.try_files: .*segments/,
    ],
    [
      'an error page for a 3xx',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\nerror_pages = { 304 = "/x.html" }\n',
      /^vhosts\[0\]\.error_pages\.304: a 4xx or 5xx status/,
    ],
    [
      'access_log = false beside a file',
      '[server]\naccess_log = false\naccess_log_file = "/tmp/a.log"\n',
      /^server\.access_log: false, but server\.access_log_file is set/,
    ],
    [
      'a compression algorithm twice',
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[vhosts.compression]\nalgorithms = ["br", "br"]\n',
      /^vhosts\[0\]\.compression\.algorithms: each algorithm once/,
    ],
    [
      'a list of names without a provider',
      '[ssl]\ndomains = ["a.example"]\n',
      /^ssl\.domains: a list of names is obtained from ssl\.provider/,
    ],
  ];
  for (const [name, text, expected] of table) {
    it(name, () => {
      const errors = errorsOf(text);
      assert.ok(
        errors.some((line) => expected.test(line)),
        `got:\n${errors.join('\n')}`,
      );
    });
  }

  it('reports every problem, not just the first', () => {
    const errors = errorsOf('[server]\nhttp_port = "x"\nworkers = -1\nbogus = 1\n');
    assert.equal(errors.length, 3);
  });

  it('gives file:line:column for a syntax error', () => {
    const file = write('[server]\nhttp_port = = 8080\n');
    const result = loadConfig(file);
    assert.equal(result.ok, false);
    if (!result.ok) assert.match(result.errors[0]!, new RegExp(`^${file.replace(/[.]/g, '\\.')}:2:\\d+: syntax error: `));
  });

  it('indexes keys under tables, arrays of tables and quoted keys', () => {
    const lines = indexKeyLines('a = 1\n[t]\nb = 2\n[[v]]\nc = 3\n[[v]]\n[v.sub]\nd = 4\n["q.k"]\n"x y" = 5\ns = """\nfake = 1\n"""\n');
    assert.equal(lines.get('a'), 1);
    assert.equal(lines.get('t.b'), 3);
    assert.equal(lines.get('v[0].c'), 5);
    assert.equal(lines.get('v[1].sub.d'), 8);
    assert.equal(lines.get('"q.k"."x y"'), 10);
    assert.equal(lines.has('"q.k".fake'), false, 'keys inside multi-line strings are not keys');
  });
});

describe('[ssl] provider', () => {
  const acme = (extra = ''): string =>
    `[server]\nhttp_port = 80\nhttps_port = 443\n[ssl]\nprovider = "acme"\nagree_tos = true\nacme_server = "https://ca.example/dir"\napi_token = "\${CF_TOKEN}"\n${extra}` +
    '[ssl.domains."manual.example"]\ncert_file = "/nonexistent"\nkey_file = "/nonexistent"\n';

  it('obtains every vhost name but "*" and the manual ones, wildcards by DNS-01', () => {
    const file = write(
      '[server]\nhttp_port = 80\nhttps_port = 443\n[ssl]\nprovider = "acme"\nagree_tos = true\n[ssl.challenges]\ndns_01_provider = "cloudflare"\ndns_01_credentials = "${CF_DNS}"\n' +
        '[[vhosts]]\ndomains = ["A.example", "*.b.example"]\nroot = "/srv"\n[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n',
    );
    const result = loadConfig(file, { CF_DNS: 'secret-dns-token' });
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    const issuance = result.config.issuance!;
    assert.deepEqual(issuance.names, ['a.example', '*.b.example']);
    assert.deepEqual(issuance.acme?.preferred, ['http-01', 'tls-alpn-01', 'dns-01']);
    assert.equal(issuance.acme?.dns?.provider === 'cloudflare' && issuance.acme.dns.token, 'secret-dns-token');
    assert.equal(result.config.tls?.certificates.length, 0, 'the HTTPS listener starts before anything is obtained');
  });

  it('workers never get the credentials', async () => {
    const { forWorkers } = await import('../../src/config/types.js');
    const result = loadConfig(
      write(
        '[server]\nhttp_port = 80\nhttps_port = 443\n[ssl]\nprovider = "cloudflare"\napi_token = "${CF_TOKEN}"\ndomains = ["a.example"]\n',
      ),
      { CF_TOKEN: 'origin-ca-secret' },
    );
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.match(JSON.stringify(result.config), /origin-ca-secret/);
    assert.doesNotMatch(JSON.stringify(forWorkers(result.config)), /origin-ca-secret/);
  });

  it('refuses a cert_dir others may enter and a DNS program others may change', () => {
    const open = path.join(dir, 'open-certs');
    mkdirSync(open, { mode: 0o755 });
    chmodSync(open, 0o755);
    const program = path.join(dir, 'dns-hook');
    writeFileSync(program, '#!/bin/sh\n', { mode: 0o777 });
    chmodSync(program, 0o777);
    const errors = errorsOf(
      `[server]\nhttp_port = 80\n[ssl]\nprovider = "acme"\nagree_tos = true\ncert_dir = "${open}"\ndomains = ["a.example"]\n[ssl.challenges]\ndns_01_provider = "exec"\ndns_01_command = "${program}"\n`,
    );
    assert.ok(
      errors.some((line) => /^ssl\.cert_dir: .* open to group or others/.test(line)),
      errors.join('\n'),
    );
    assert.ok(
      errors.some((line) => /^ssl\.challenges\.dns_01_command: .* writable by group or others/.test(line)),
      errors.join('\n'),
    );
  });

  it('names the manual certificate that is broken, next to a provider', () => {
    const errors = errorsOf(acme(), { CF_TOKEN: 'x' });
    assert.ok(
      errors.some((line) => /^ssl\.domains\."manual\.example": /.test(line)),
      errors.join('\n'),
    );
  });
});

describe('htpasswd files', () => {
  it('refuses a scheme other than bcrypt, naming the line', () => {
    const file = path.join(dir, 'md5.htpasswd');
    writeFileSync(file, execFileSync('htpasswd', ['-nbm', 'bob', 'pw'], { encoding: 'utf8' }));
    const errors = errorsOf(`[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[vhosts.auth]\nhtpasswd = "${file}"\n`);
    assert.ok(
      errors.some((line) => /vhosts\[0\]\.auth\.htpasswd: .*line 1: only bcrypt hashes are accepted/.test(line)),
      errors.join('\n'),
    );
  });

  it('accepts what htpasswd -B writes', () => {
    const file = path.join(dir, 'bcrypt.htpasswd');
    execFileSync('htpasswd', ['-cbB', file, 'alice', 'pw']);
    execFileSync('htpasswd', ['-bB', file, 'bob', 'pw2']);
    const result = loadConfig(write(`[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[vhosts.auth]\nhtpasswd = "${file}"\n`));
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
  });
});

describe('${VAR} interpolation', () => {
  const text = '[[vhosts]]\ndomains = ["*"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "http://${UPSTREAM_HOST}:3000"\n';

  it('substitutes environment variables', () => {
    const result = loadConfig(write(text), { UPSTREAM_HOST: '127.0.0.9' });
    assert.ok(result.ok);
    const backend = result.config.vhosts[0]!.backend;
    assert.equal(backend.type === 'proxy' && backend.targets[0]!.url, 'http://127.0.0.9:3000');
  });

  it('names the key when a variable is unset, without echoing other values', () => {
    const errors = errorsOf(text, {});
    assert.deepEqual(errors, ['vhosts[0].backend.target: environment variable UPSTREAM_HOST is not set (line 5)']);
  });
});

describe('miwidothttp check', () => {
  it('exits 0 on a valid file', () => {
    const result = cli(['check', '-c', path.join(ROOT, 'config/miwidothttp.toml')]);
    assert.equal(result.status, 0);
  });

  it('exits 1 with one `FILE: key.path: what is wrong` line per problem', () => {
    const file = write('[server]\nworkers = -1\nhttp_port = "80"\n');
    const result = cli(['check', '-c', file]);
    assert.equal(result.status, 1);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 2);
    for (const line of lines) assert.match(line, new RegExp(`^${file.replace(/[.]/g, '\\.')}: server\\.(workers|http_port): `));
  });

  it('uses ./miwidothttp.toml when there is no -c', () => {
    const cwd = tempDir();
    writeFileSync(path.join(cwd, 'miwidothttp.toml'), '[server]\nworkers = "two"\n');
    const result = cli(['check'], { cwd });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /miwidothttp\.toml: server\.workers: /);
  });
});
