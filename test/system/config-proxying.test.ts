/**
 * The config of listeners, includes and upstream options: listen lists
 * compiled into listeners, overlapping addresses named, included files with
 * their own file and line in every problem, duplicate domains across files,
 * the upstream keys checked, and the upstream TLS files read by the master
 * (the worker's copy carries their PEM, not their paths).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, loadConfigDocument } from '../../src/config/load.js';
import { cli, tempDir } from '../support/harness.js';
import { TestCa } from '../support/test-ca.js';

const dir = tempDir('miwidothttp-config-proxying-');
chmodSync(dir, 0o755);
let counter = 0;

function write(text: string, name = `c${counter++}.toml`): string {
  const file = path.join(dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

function load(text: string) {
  return loadConfig(write(text), {});
}

function errorsOf(text: string): string[] {
  const result = load(text);
  assert.equal(result.ok, false, 'expected the config to be refused');
  return result.ok ? [] : result.errors;
}

const site = '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n';
const tls = (ca: TestCa): string => {
  const files = ca.issue(`site-${counter}`, ['localhost']);
  return `[ssl.domains."localhost"]\ncert_file = "${files.cert}"\nkey_file = "${files.key}"\n`;
};

describe('listen and listen_tls', () => {
  const ca = new TestCa(dir);

  it('replace bind_address with the ports, one listener per entry, IPv6 in brackets', () => {
    const result = load(
      `[server]\nlisten = ["127.0.0.1:8080", "[::1]:8080"]\nlisten_tls = ["127.0.0.1:8443", "[::1]:8443"]\n${tls(ca)}${site}`,
    );
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.deepEqual(
      result.config.listeners.map((l) => [l.id, l.protocol, l.address, l.port]),
      [
        ['http 127.0.0.1:8080', 'http', '127.0.0.1', 8080],
        ['http [::1]:8080', 'http', '::1', 8080],
        ['https 127.0.0.1:8443', 'https', '127.0.0.1', 8443],
        ['https [::1]:8443', 'https', '::1', 8443],
      ],
    );
    assert.equal(result.config.tls?.httpsPort, 8443, 'redirects to HTTPS go to the first listen_tls port');
  });

  const refused: [string, string, RegExp][] = [
    [
      'a wildcard and an address it covers',
      'listen = ["0.0.0.0:80", "127.0.0.1:80"]',
      /server\.listen\[1\]: 127\.0\.0\.1:80 overlaps 0\.0\.0\.0:80 \(server\.listen\[0\]\)/,
    ],
    [
      'IPv6 any covers IPv4 (dual-stack)',
      'listen = ["127.0.0.1:8080", "[::]:8080"]',
      /server\.listen\[1\]: \[::\]:8080 overlaps 127\.0\.0\.1:8080/,
    ],
    [
      'one address twice',
      'listen = ["127.0.0.1:8080", "127.0.0.1:8080"]',
      /server\.listen\[1\]: 127\.0\.0\.1:8080 is also server\.listen\[0\]/,
    ],
    [
      'a port for HTTP and HTTPS',
      'listen = ["127.0.0.1:8080"]\nlisten_tls = ["0.0.0.0:8080"]',
      /server\.listen_tls\[0\]: 0\.0\.0\.0:8080 overlaps 127\.0\.0\.1:8080 \(server\.listen\[0\]\)/,
    ],
    [
      'the metrics on a site port',
      'listen = ["0.0.0.0:9145"]\n[server.metrics]\nenabled = true',
      /server\.metrics\.port: 127\.0\.0\.1:9145 overlaps 0\.0\.0\.0:9145/,
    ],
    ['not an address', 'listen = ["localhost:80"]', /server\.listen\[0\]: expected "address:port" with an IP address/],
    ['an IPv6 address without brackets', 'listen = ["::1:80"]', /server\.listen\[0\]: expected "address:port"/],
  ];
  for (const [name, keys, expected] of refused) {
    it(`check names ${name}`, () => {
      const errors = errorsOf(`[server]\n${keys}\n${name.includes('HTTPS') ? tls(ca) : ''}${site}`);
      assert.ok(
        errors.some((line) => expected.test(line)),
        errors.join('\n'),
      );
    });
  }

  it('listen_tls without [ssl] is refused, not ignored', () => {
    const errors = errorsOf(`[server]\nlisten_tls = ["127.0.0.1:8443"]\n${site}`);
    assert.ok(
      errors.some((line) => /server\.listen_tls: needs \[ssl\]/.test(line)),
      errors.join('\n'),
    );
  });
});

describe('include', () => {
  const base = tempDir('miwidothttp-include-');

  it('appends the vhosts of every matching file, relative to the including file, sorted', () => {
    const sites = path.join(base, 'ok');
    write('', path.relative(dir, path.join(sites, 'placeholder')));
    writeFileSync(path.join(sites, 'b.toml'), '[[vhosts]]\ndomains = ["b.test"]\nroot = "/srv/b"\n');
    writeFileSync(
      path.join(sites, 'a.toml'),
      '[[vhosts]]\ndomains = ["a.test"]\nroot = "/srv/a"\n[[vhosts]]\ndomains = ["a2.test"]\nroot = "/srv/a2"\n',
    );
    writeFileSync(path.join(sites, 'notes.txt'), 'not toml');
    const main = path.join(base, 'main.toml');
    writeFileSync(main, `[server]\ninclude = ["ok/*.toml"]\n${site}`);
    const result = loadConfig(main, {});
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.deepEqual(
      result.config.vhosts.map((vhost) => vhost.domains[0]),
      ['*', 'a.test', 'a2.test', 'b.test'],
    );
  });

  it('a problem in an included vhost names that file, its own index and line', () => {
    const sites = path.join(base, 'bad');
    mkdirSync(sites, { recursive: true });
    writeFileSync(path.join(sites, 'a.toml'), '[[vhosts]]\ndomains = ["a.test"]\nroot = "/srv/a"\n');
    const broken = path.join(sites, 'b.toml');
    writeFileSync(broken, '# a comment\n[[vhosts]]\ndomains = ["b.test"]\nroot = "/srv/b"\nlisting = true\n');
    const main = path.join(base, 'bad.toml');
    writeFileSync(main, `[server]\ninclude = ["bad/*.toml"]\n${site}`);
    const result = loadConfig(main, {});
    assert.equal(result.ok, false);
    assert.deepEqual(result.ok ? [] : result.errors, [`${broken}: vhosts[0].listing: unknown key (line 5)`]);
  });

  it('a syntax error in an included file names that file and line', () => {
    const broken = path.join(base, 'syntax', 'x.toml');
    mkdirSync(path.dirname(broken), { recursive: true });
    writeFileSync(broken, '[[vhosts]]\ndomains = = ["x.test"]\nroot = "/srv"\n');
    const main = path.join(base, 'syntax.toml');
    writeFileSync(main, `[server]\ninclude = ["syntax/*.toml"]\n${site}`);
    const result = loadConfig(main, {});
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : (result.errors[0] ?? ''), new RegExp(`^${broken.replace(/[.]/g, '\\.')}:2:\\d+: syntax error`));
  });

  it('a missing file named without a glob is an error; a glob matching nothing is not', () => {
    const main = path.join(base, 'missing.toml');
    writeFileSync(main, `[server]\ninclude = ["nothing-here/*.toml", "absent.toml"]\n${site}`);
    const result = loadConfig(main, {});
    assert.equal(result.ok, false);
    assert.deepEqual(result.ok ? [] : result.errors, [`${path.join(base, 'absent.toml')}: cannot read: ENOENT`]);
  });

  it('an included file holds [[vhosts]] only', () => {
    const sneaky = path.join(base, 'sneaky', 's.toml');
    mkdirSync(path.dirname(sneaky), { recursive: true });
    writeFileSync(sneaky, '[security.limits]\nmax_body_size = 1\n[[vhosts]]\ndomains = ["s.test"]\nroot = "/srv/s"\n');
    const main = path.join(base, 'sneaky.toml');
    writeFileSync(main, `[server]\ninclude = ["sneaky/*.toml"]\n${site}`);
    const result = loadConfig(main, {});
    assert.equal(result.ok, false);
    assert.deepEqual(result.ok ? [] : result.errors, [
      `${sneaky}: security: an included file holds [[vhosts]] tables only; server-wide settings belong in the main file (line 1)`,
    ]);
  });

  it('check refuses a domain claimed twice, across the main file and an include, naming both', () => {
    const dup = path.join(base, 'dup', 'd.toml');
    mkdirSync(path.dirname(dup), { recursive: true });
    writeFileSync(
      dup,
      '[[vhosts]]\ndomains = ["other.test"]\nroot = "/srv/o"\n[[vhosts]]\ndomains = ["x.test", "APP.test"]\nroot = "/srv/d"\n',
    );
    const main = path.join(base, 'dup.toml');
    writeFileSync(main, `[server]\ninclude = ["dup/*.toml"]\n[[vhosts]]\ndomains = ["app.test"]\nroot = "/srv/a"\n`);
    const result = cli(['check', '-c', main]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(
      result.stderr + result.stdout,
      new RegExp(
        `${dup.replace(/[.]/g, '\\.')}: vhosts\\[1\\]\\.domains\\[1\\]: "app\\.test" is already claimed by vhosts\\[0\\], which always wins \\(line 5\\)`,
      ),
    );
  });

  it('a cluster node refuses include rather than ignore it (the cluster shares its vhosts)', () => {
    const result = loadConfigDocument(
      { server: { include: ['sites/*.toml'] }, vhosts: [{ domains: ['*'], root: '/srv' }] },
      'merged',
      'check',
      {},
    );
    assert.equal(result.ok, false);
    assert.ok(
      !result.ok && result.errors.some((line) => /server\.include: is not supported in a cluster/.test(line)),
      JSON.stringify(result),
    );
  });

  it('a domain twice in one file is named too', () => {
    const errors = errorsOf('[[vhosts]]\ndomains = ["a.test"]\nroot = "/srv"\n[[vhosts]]\ndomains = ["a.test"]\nroot = "/srv"\n');
    assert.ok(
      errors.some((line) => /vhosts\[1\]\.domains\[0\]: "a\.test" is already claimed by vhosts\[0\]/.test(line)),
      errors.join('\n'),
    );
  });
});

describe('upstream options', () => {
  const ca = new TestCa(tempDir('miwidothttp-upstream-ca-'));
  const proxy = (keys: string): string => `[[vhosts]]\ndomains = ["*"]\n[vhosts.backend]\ntype = "proxy"\n${keys}\n`;

  it('compiles targets of every kind and the defaults: websocket on, HTTP/1.1, no health checks', () => {
    const result = load(
      proxy(
        'targets = [{ url = "http://127.0.0.1:9000" }, { url = "https://api.test:8443/v1" }, { url = "unix:/run/app/app.sock", weight = 3 }]',
      ),
    );
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    const backend = result.config.vhosts[0]!.backend;
    assert.equal(backend.type, 'proxy');
    if (backend.type !== 'proxy') return;
    assert.equal(backend.webSocket, true);
    assert.equal(backend.protocol, 'http/1.1');
    assert.equal(backend.healthCheck, null);
    assert.equal(backend.tls, null);
    assert.deepEqual(backend.targets[2], {
      url: 'unix:/run/app/app.sock',
      weight: 3,
      socketPath: '/run/app/app.sock',
      hostSocketPath: '/run/app/app.sock',
      jailBind: { hostPath: '/run/app', jailPath: '/run/app' },
    });
  });

  it('a unix socket inside the chroot is reached by its path in the jail', () => {
    const jail = tempDir('miwidothttp-jail-');
    const result = load(`[process.isolation]\nchroot = "${jail}"\n${proxy(`target = "unix:${jail}/run/app.sock"`)}`);
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    const backend = result.config.vhosts[0]!.backend;
    assert.ok(backend.type === 'proxy');
    assert.equal(backend.targets[0]!.socketPath, '/run/app.sock');
    assert.equal(backend.targets[0]!.hostSocketPath, `${jail}/run/app.sock`);
    // Bound over the jail's overlay all the same: a socket seen through overlayfs cannot be connected to.
    assert.deepEqual(backend.targets[0]!.jailBind, { hostPath: `${jail}/run`, jailPath: '/run' });
  });

  it('a socket directly in a shared directory is bound alone; one whose directory holds a secret is refused', () => {
    const shared = load(proxy('target = "unix:/run/app.sock"'));
    assert.ok(shared.ok, shared.ok ? '' : shared.errors.join('\n'));
    const backend = shared.config.vhosts[0]!.backend;
    assert.ok(backend.type === 'proxy');
    assert.deepEqual(backend.targets[0]!.jailBind, { hostPath: '/run/app.sock', jailPath: '/run/app.sock' });
    const base = tempDir('miwidothttp-socket-dir-');
    const errors = errorsOf(`[server]\nstate_dir = "${base}/state"\n${proxy(`target = "unix:${base}/app.sock"`)}`);
    assert.ok(
      errors.some((line) =>
        /vhosts\[0\]\.backend\.targets\[0\]: .* holds server\.state_dir .* give the socket a directory of its own/.test(line),
      ),
      errors.join('\n'),
    );
  });

  it('health checks in milliseconds', () => {
    const result = load(
      proxy('target = "http://127.0.0.1:9000"\nhealth_check = { path = "/healthz", interval = 5, timeout = 2, fails = 3, passes = 2 }'),
    );
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    const backend = result.config.vhosts[0]!.backend;
    assert.ok(backend.type === 'proxy');
    assert.deepEqual(backend.healthCheck, { path: '/healthz', intervalMs: 5000, timeoutMs: 2000, fails: 3, passes: 2 });
  });

  const refused: [string, string, RegExp][] = [
    ['a relative unix path', 'target = "unix:run/app.sock"', /target: expected an http:\/\/, https:\/\/ or unix:\/path target/],
    ['an unnormalised unix path', 'target = "unix:/run/../app.sock"', /target: a unix: target is an absolute, normalised path/],
    ['a unix path too long for sockaddr_un', `target = "unix:/${'s'.repeat(120)}"`, /longer than the 107 bytes/],
    [
      'a CA file for http:// targets only',
      'target = "http://127.0.0.1:9000"\nca_file = "/etc/ssl/ca.pem"',
      /backend\.ca_file: only applies to https:\/\/ targets/,
    ],
    [
      'verify = false for http:// targets only',
      'target = "http://127.0.0.1:9000"\nverify = false',
      /backend\.verify: only applies to https:\/\/ targets/,
    ],
    [
      'a client certificate without its key',
      'target = "https://a.test"\nclient_cert_file = "/c.pem"',
      /backend\.client_key_file: client_cert_file and client_key_file go together/,
    ],
    [
      'an IP address as server_name',
      'target = "https://127.0.0.1"\nserver_name = "127.0.0.1"',
      /backend\.server_name: must be a DNS host name/,
    ],
    [
      'a health check timeout over its interval',
      'target = "http://a.test"\nhealth_check = { interval = 1, timeout = 2 }',
      /health_check\.timeout: must not exceed/,
    ],
    ['an unknown protocol', 'target = "http://a.test"\nprotocol = "h3"', /backend\.protocol: /],
    ['an unknown health check key', 'target = "http://a.test"\nhealth_check = { uri = "/" }', /backend\.health_check\.uri: unknown key/],
  ];
  for (const [name, keys, expected] of refused) {
    it(`check names ${name}`, () => {
      const errors = errorsOf(proxy(keys));
      assert.ok(
        errors.some((line) => expected.test(line)),
        errors.join('\n'),
      );
    });
  }

  it('the TLS files are checked: missing, no certificate, a key of another certificate', () => {
    const one = ca.issue('client-one', ['client.test']);
    const two = ca.issue('client-two', ['client.test']);
    const notPem = path.join(ca.dir, 'not.pem');
    writeFileSync(notPem, 'hello\n');
    const errors = errorsOf(
      `${proxy(`target = "https://a.test"\nca_file = "${notPem}"\nclient_cert_file = "${one.cert}"\nclient_key_file = "${two.key}"`)}` +
        `[[vhosts]]\ndomains = ["b.test"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "https://b.test"\nca_file = "/nonexistent/ca.pem"\n`,
    );
    assert.ok(
      errors.some((line) => /vhosts\[0\]\.backend\.ca_file: .*not\.pem holds no PEM certificate/.test(line)),
      errors.join('\n'),
    );
    assert.ok(
      errors.some((line) => /vhosts\[0\]\.backend\.client_key_file: is not the key of .*client-one\.pem/.test(line)),
      errors.join('\n'),
    );
    assert.ok(
      errors.some((line) => /vhosts\[1\]\.backend\.ca_file: cannot read \/nonexistent\/ca\.pem: ENOENT/.test(line)),
      errors.join('\n'),
    );
  });

  it("a route's backend has the same options, and its problems name the route by its own index", () => {
    const result = load(
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n' +
        '[[vhosts.routes]]\npath = "/a/"\n[vhosts.routes.backend]\ntype = "proxy"\ntarget = "unix:/run/a/a.sock"\nprotocol = "h2"\n' +
        '[[vhosts.routes]]\npath = "/longer/path/"\n[vhosts.routes.backend]\ntype = "proxy"\ntarget = "https://b.test"\nca_file = "/nonexistent/ca.pem"\nwebsocket = false\n',
    );
    assert.equal(result.ok, false);
    // Routes are kept longest first, but a problem names the route as it is written (routes[1], line 15).
    assert.deepEqual(result.ok ? [] : result.errors.map((line) => line.slice(line.indexOf(': ') + 2)), [
      'vhosts[0].routes[1].backend.ca_file: cannot read /nonexistent/ca.pem: ENOENT (line 15)',
    ]);
    const fine = load(
      '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n[[vhosts.routes]]\npath = "/a/"\n[vhosts.routes.backend]\ntype = "proxy"\ntarget = "unix:/run/a/a.sock"\nprotocol = "h2"\n',
    );
    assert.ok(fine.ok, fine.ok ? '' : fine.errors.join('\n'));
    const backend = fine.config.vhosts[0]!.routes[0]!.backend;
    assert.ok(backend.type === 'proxy');
    assert.equal(backend.protocol, 'h2');
    assert.equal(backend.webSocket, true);
    assert.equal(backend.configKey, 'vhosts[0].routes[0].backend');
    assert.deepEqual(backend.targets[0]!.jailBind, { hostPath: '/run/a', jailPath: '/run/a' });
  });

  it('workers get the PEM of the files, read by the master', () => {
    const client = ca.issue('client-ok', ['client.test']);
    const result = load(
      proxy(
        `target = "https://a.test"\nca_file = "${ca.certFile}"\nclient_cert_file = "${client.cert}"\nclient_key_file = "${client.key}"\nserver_name = "api.internal"`,
      ),
    );
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    const backend = result.config.vhosts[0]!.backend;
    assert.ok(backend.type === 'proxy' && backend.tls !== null);
    assert.equal(backend.tls.serverName, 'api.internal');
    assert.equal(backend.tls.verify, true);
    assert.match(backend.tls.pem?.ca ?? '', /BEGIN CERTIFICATE/);
    assert.match(backend.tls.pem?.cert ?? '', /BEGIN CERTIFICATE/);
    assert.match(backend.tls.pem?.key ?? '', /PRIVATE KEY/);
    assert.ok(Object.isFrozen(backend.tls.pem));
  });
});
