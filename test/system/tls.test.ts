/**
 * HTTPS with manual certificates (issue 6) against a real, sandboxed server
 * with two workers: SNI by exact and wildcard name with a default, the TLS
 * policy (no TLS 1.1, no CBC), HSTS only over HTTPS, enforce_https, session
 * resumption across workers, `check` naming a broken certificate's domain,
 * a reload with a broken certificate refused, `miwidothttp certs`, and
 * sslscan finding nothing weak. Certificates are made by the openssl
 * command line at test time.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import net from 'node:net';
import { cli, freePort, request, TestServer, waitFor } from '../support/harness.js';
import { fingerprintOf, TestCa, siteCertificate } from '../support/test-ca.js';

interface Handshake {
  fingerprint: string;
  reused: boolean;
  session: Buffer | undefined;
  socket: tls.TLSSocket;
}

function handshake(port: number, options: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    let session: Buffer | undefined;
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    socket.on('session', (data: Buffer) => (session = data));
    socket.once('secureConnect', () => {
      // TLS 1.3 sends its ticket after the handshake: give it a moment.
      setTimeout(
        () => resolve({ fingerprint: socket.getPeerCertificate().fingerprint256, reused: socket.isSessionReused(), session, socket }),
        100,
      );
    });
    socket.once('error', reject);
  });
}

/** Once `socket` is secure, sends `request` and collects the answer until the server ends the connection. */
function exchangeOverTls(socket: tls.TLSSocket, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.on('secureConnect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
}

/** The worker pid holding the server side of the connection whose client port is `clientPort`. */
function workerHolding(workerPids: readonly number[], clientPort: number): number | null {
  const hexPort = clientPort.toString(16).toUpperCase().padStart(4, '0');
  let inode: string | undefined;
  for (const row of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const fields = row.trim().split(/\s+/);
    if (fields[3] === '01' && fields[2]?.endsWith(`:${hexPort}`)) inode = fields[9];
  }
  if (inode === undefined) return null;
  for (const pid of workerPids) {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return null;
}

describe('HTTPS with manual certificates', () => {
  const server = new TestServer();
  let ca: TestCa;
  let site: { cert: string; key: string };
  let wild: { cert: string; key: string };
  let httpsPort = 0;
  let config = '';

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'secure\n');
    // A certbot webroot: with manual certificates the files under the ACME path are served like any other.
    mkdirSync(path.join(server.dir, '.well-known/acme-challenge'), { recursive: true });
    writeFileSync(path.join(server.dir, '.well-known/acme-challenge/webroot-token'), 'webroot-token.thumbprint');
    ca = new TestCa(server.dir);
    site = ca.issue('site', ['site.test']);
    wild = ca.issue('wild', ['*.wild.test']);
    httpsPort = await freePort();
    config = `[ssl.domains."site.test"]
cert_file = "${site.cert}"
key_file = "${site.key}"
chain_file = "${ca.certFile}"

[ssl.domains."*.wild.test"]
cert_file = "${wild.cert}"
key_file = "${wild.key}"

[security]
enforce_https = true

[[vhosts]]
domains = ["*"]
root = "${server.dir}"`;
    await server.start(config, `https_port = ${httpsPort}\n`);
  });
  after(() => server.stop());

  it('chooses the certificate by SNI: exact, wildcard, and the first one as the default', async () => {
    const exact = await handshake(httpsPort, { servername: 'site.test' });
    const wildcard = await handshake(httpsPort, { servername: 'a.wild.test' });
    const unknown = await handshake(httpsPort, { servername: 'other.test' });
    const none = await handshake(httpsPort, {});
    for (const result of [exact, wildcard, unknown, none]) result.socket.destroy();
    assert.equal(exact.fingerprint, fingerprintOf(site.cert));
    assert.equal(wildcard.fingerprint, fingerprintOf(wild.cert));
    assert.equal(unknown.fingerprint, fingerprintOf(site.cert));
    assert.equal(none.fingerprint, fingerprintOf(site.cert));
  });

  it('serves over HTTPS with HSTS, and verifies against the CA with the chain sent', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'site.test', ca: readFileSync(ca.certFile) });
    const answer = await exchangeOverTls(socket, 'GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /\r\nStrict-Transport-Security: max-age=31536000; includeSubDomains\r\n/i);
    assert.match(answer, /secure\n$/);
  });

  it('refuses TLS 1.1 and CBC-only clients', async () => {
    await assert.rejects(
      handshake(httpsPort, { servername: 'site.test', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
    );
    await assert.rejects(
      handshake(httpsPort, { servername: 'site.test', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA' }),
    );
  });

  it('redirects plain HTTP to HTTPS (301, 308 for other methods), except ACME challenges; no HSTS over HTTP', async () => {
    const get = await request(server.port, { path: '/a/b?c=d', headers: { Host: 'site.test' } });
    assert.equal(get.status, 301);
    assert.equal(get.headers.location, `https://site.test:${httpsPort}/a/b?c=d`);
    assert.equal(get.headers['strict-transport-security'], undefined);
    const post = await request(server.port, { method: 'POST', path: '/form', headers: { Host: 'site.test' }, body: 'x=1' });
    assert.equal(post.status, 308);
    const acme = await request(server.port, { path: '/.well-known/acme-challenge/token', headers: { Host: 'site.test' } });
    assert.equal(acme.status, 404, 'answered over HTTP, not redirected');
    const webroot = await request(server.port, { path: '/.well-known/acme-challenge/webroot-token', headers: { Host: 'site.test' } });
    assert.equal(webroot.status, 200, 'a certbot webroot file, served over HTTP');
    assert.equal(webroot.body, 'webroot-token.thumbprint');
    // The same file over HTTPS, then HTTP again: one response class serves both, each with its own headers.
    const socket = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'site.test', ca: readFileSync(ca.certFile) });
    const overHttps = await exchangeOverTls(
      socket,
      'GET /.well-known/acme-challenge/webroot-token HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(overHttps, /^HTTP\/1\.1 200 [\s\S]*\r\nStrict-Transport-Security: max-age=31536000; includeSubDomains\r\n/i);
    const again = await request(server.port, { path: '/.well-known/acme-challenge/webroot-token', headers: { Host: 'site.test' } });
    assert.equal(again.status, 200);
    assert.equal(again.headers['strict-transport-security'], undefined, 'no HSTS over HTTP, after the same file went out over HTTPS');
    const bad = await request(server.port, { path: '/', headers: { Host: 'evil.test/@x' } });
    assert.equal(bad.status, 400, 'nothing but a host name goes into Location');
  });

  it('a session made on one worker resumes on the other', async () => {
    const workers = server.status().workers.map((worker) => worker.pid);
    const first = await handshake(httpsPort, { servername: 'site.test', maxVersion: 'TLSv1.2' });
    const firstWorker = workerHolding(workers, first.socket.localPort!);
    assert.ok(first.session, 'a session to resume');
    assert.notEqual(firstWorker, null);
    let resumedElsewhere = false;
    for (let attempt = 0; attempt < 30 && !resumedElsewhere; attempt++) {
      const next = await handshake(httpsPort, { servername: 'site.test', maxVersion: 'TLSv1.2', session: first.session });
      const holder = workerHolding(workers, next.socket.localPort!);
      if (holder !== null && holder !== firstWorker) {
        assert.equal(next.reused, true, 'resumed on the other worker');
        resumedElsewhere = true;
      }
      next.socket.destroy();
    }
    first.socket.destroy();
    assert.ok(resumedElsewhere, 'no connection reached the other worker in 30 tries');
  });

  it('`certs` lists each certificate with issuer and expiry; keys never reach the log', () => {
    const result = cli(['certs', '-c', server.configFile, '--json']);
    assert.equal(result.status, 0, result.stderr);
    const listed = JSON.parse(result.stdout) as {
      certificates: { name: string; issuer: string; notAfter: string; nextRenewal: null }[];
      lastError: null;
    };
    assert.deepEqual(
      listed.certificates.map((c) => c.name),
      ['site.test', '*.wild.test'],
    );
    assert.match(listed.certificates[0]!.issuer, /miwidothttp test CA/);
    assert.ok(Date.parse(listed.certificates[0]!.notAfter) > Date.now());
    assert.equal(listed.lastError, null);
    assert.doesNotMatch(server.output, /PRIVATE KEY/);
    const keyBody = readFileSync(site.key, 'utf8').split('\n')[1]!;
    assert.equal(server.output.includes(keyBody), false);
  });

  // sslscan is a Debian package the test command installs (README).
  it('sslscan finds no SSLv3, TLS 1.0/1.1 and no weak cipher', () => {
    const scan = execFileSync('sslscan', ['--no-colour', '--sni-name=site.test', `127.0.0.1:${httpsPort}`], { encoding: 'utf8' });
    for (const protocol of ['SSLv2', 'SSLv3', 'TLSv1.0', 'TLSv1.1'])
      assert.match(scan, new RegExp(`${protocol.replace('.', '\\.')}\\s+disabled`), `${protocol} disabled`);
    assert.match(scan, /TLSv1\.2\s+enabled/);
    assert.match(scan, /TLSv1\.3\s+enabled/);
    const accepted = scan.split('\n').filter((line) => /^(Preferred|Accepted)\s/.test(line));
    assert.ok(accepted.length > 0, scan);
    for (const line of accepted) assert.match(line, /GCM|CHACHA20/, `weak cipher accepted: ${line}`);
  });

  it('a reload with a certificate whose key does not match is refused; the old certificates keep serving', async () => {
    const other = ca.key('other');
    copyFileSync(other, path.join(server.dir, 'mismatch.key'));
    chmodSync(path.join(server.dir, 'mismatch.key'), 0o600);
    writeFileSync(
      server.configFile,
      readFileSync(server.configFile, 'utf8').replace(`key_file = "${site.key}"`, `key_file = "${path.join(server.dir, 'mismatch.key')}"`),
    );
    const reload = cli(['reload', '-c', server.configFile]);
    assert.equal(reload.status, 1);
    assert.match(reload.stderr, /ssl\.domains\."site\.test": .*does not match/);
    const still = await handshake(httpsPort, { servername: 'site.test' });
    still.socket.destroy();
    assert.equal(still.fingerprint, fingerprintOf(site.cert));
  });
});

describe('PROXY protocol in front of HTTPS', () => {
  const server = new TestServer();
  let httpsPort = 0;
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'behind a proxy\n');
    const tlsSite = siteCertificate(server.dir);
    httpsPort = await freePort();
    await server.start(
      `${tlsSite}
[security.proxy_protocol]
enabled = true
trusted_proxies = ["127.0.0.1"]

[[vhosts]]
domains = ["*"]
root = "${server.dir}"`,
      `https_port = ${httpsPort}\naccess_log = true\n`,
    );
  });
  after(() => server.stop());

  it("a request over TLS is the PROXY header's client, not the proxy's", async () => {
    const raw = net.connect(httpsPort, '127.0.0.1');
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write('PROXY TCP4 198.51.100.23 127.0.0.1 40000 443\r\n');
    const socket = tls.connect({ socket: raw, servername: 'site.test', rejectUnauthorized: false });
    const answer = await exchangeOverTls(socket, 'GET /?via=proxy HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 200 /);
    const line = await waitFor('the access log line', () => server.logLines().find((entry) => entry.access === true && entry.path === '/'));
    assert.equal(line.clientIp, '198.51.100.23');
  });
});

describe('check names the domain of a broken certificate', () => {
  const server = new TestServer();
  after(() => server.stop());

  it('missing file, key that does not match, expired certificate', () => {
    const ca = new TestCa(server.dir);
    const good = ca.issue('good', ['good.test']);
    const expired = ca.issue('old', ['old.test'], { days: -1 });
    const stranger = ca.key('stranger');
    const file = path.join(server.dir, 'broken.toml');
    writeFileSync(
      file,
      `[server]
pid_file = "${server.dir}/x.pid"

[ssl.domains."missing.test"]
cert_file = "${server.dir}/nope.crt"
key_file = "${good.key}"

[ssl.domains."mismatch.test"]
cert_file = "${good.cert}"
key_file = "${stranger}"

[ssl.domains."old.test"]
cert_file = "${expired.cert}"
key_file = "${expired.key}"

[[vhosts]]
domains = ["*"]
root = "${server.dir}"
`,
    );
    const result = cli(['check', '-c', file]);
    assert.equal(result.status, 1);
    const lines = result.stderr.trim().split('\n');
    assert.ok(
      lines.some((line) => /ssl\.domains\."missing\.test": .*(ENOENT|cannot read)/.test(line)),
      result.stderr,
    );
    assert.ok(
      lines.some((line) => /ssl\.domains\."mismatch\.test": .*does not match/.test(line)),
      result.stderr,
    );
    assert.ok(
      lines.some((line) => /ssl\.domains\."old\.test": .*expired/.test(line)),
      result.stderr,
    );
    assert.doesNotMatch(result.stderr, /PRIVATE KEY/);
  });
});
