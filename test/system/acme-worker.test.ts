/**
 * The worker's side of certificates that change while serving and of ACME
 * challenges (issue 6), on a real worker process driven over IPC by a fake
 * master (test/fake-master.ts), until the master sends these messages:
 *
 * - an HTTPS listener starts with no certificate at all: handshakes fail with
 *   an alert (tls.handshake_failed), the worker serves on;
 * - TLS_CERTS before CFG_START, and while serving: new handshakes get the new
 *   set, connections already open (HTTP/1.1 keep-alive, an h2 session) keep
 *   theirs;
 * - ACME_CHALLENGES: HTTP-01 answered on every listener for any Host, before
 *   rate limits and enforce_https, 404/405 otherwise, the newest version
 *   kept, ACME_ACK once applied; TLS-ALPN-01 presented to a handshake that
 *   offers acme-tls/1 for a name with a challenge, which Node makes possible
 *   by calling the ALPN callback before the SNI callback (pinned below).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { loadConfig } from '../../src/config/load.js';
import type { CompiledConfig } from '../../src/config/types.js';
import type { MasterMessage } from '../../src/ipc/messages.js';
import type { CertificateMaterial } from '../../src/tls/material.js';
import { FakeMaster } from '../support/fake-master.js';
import { h2Connect, h2Request } from '../support/h2-client.js';
import { freePort, request, tempDir, waitFor } from '../support/harness.js';
import { fingerprintOf, TestCa } from '../support/test-ca.js';

const TICKETS = { ticketKey: Buffer.alloc(48, 1).toString('base64'), sessionIdContext: 'acme-worker-test' };
/** RFC 8555 §8.1: 43 base64url characters (256 bits). */
const TOKEN = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA';
const KEY_AUTHORIZATION = `${TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI`;

interface Handshake {
  readonly protocol: string | false | null;
  readonly fingerprint: string;
  readonly certificate: tls.PeerCertificate;
  readonly socket: tls.TLSSocket;
}

function handshake(port: number, options: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      const certificate = socket.getPeerCertificate(true);
      resolve({ protocol: socket.alpnProtocol, fingerprint: certificate.fingerprint256, certificate, socket });
    });
    socket.once('error', reject);
  });
}

/** One HTTP/1.1 request on an open TLS connection, kept alive. */
function requestOn(socket: tls.TLSSocket, target: string, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const head = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)/i.exec(text);
      if (head !== -1 && length !== null && text.length >= head + 4 + Number(length[1])) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

const material = (name: string, files: { cert: string; key: string }): CertificateMaterial => ({
  name,
  certPem: readFileSync(files.cert, 'utf8'),
  keyPem: readFileSync(files.key, 'utf8'),
  chainPem: null,
});

describe('worker TLS and ACME challenges, driven by a fake master', () => {
  const dir = tempDir();
  let ca: TestCa;
  let first: { cert: string; key: string };
  let second: { cert: string; key: string };
  let config: CompiledConfig;
  let httpPort = 0;
  let httpsPort = 0;
  const masters: FakeMaster[] = [];
  const start = async (startup: MasterMessage[]): Promise<FakeMaster> => {
    const master = await FakeMaster.start(config, startup);
    masters.push(master);
    return master;
  };

  before(async () => {
    // The site apart from the keys and the state: a config without a chroot binds its roots into the workers' jail.
    mkdirSync(path.join(dir, 'www'));
    writeFileSync(path.join(dir, 'www', 'index.html'), 'worker\n');
    ca = new TestCa(dir);
    first = ca.issue('first', ['site.test', 'acme.test']);
    second = ca.issue('second', ['site.test', 'acme.test']);
    httpPort = await freePort();
    httpsPort = await freePort();
    const file = path.join(dir, 'worker.toml');
    writeFileSync(
      file,
      `[server]
bind_address = "127.0.0.1"
http_port = ${httpPort}
https_port = ${httpsPort}
pid_file = "${dir}/unused.pid"
state_dir = "${dir}/state"
log_level = "debug"

[ssl]
provider = "acme"
agree_tos = true
acme_server = "https://127.0.0.1:9/dir"

[ssl.challenges]
http_01_port = ${httpPort}
tls_alpn_01_port = ${httpsPort}

[ssl.domains."site.test"]
cert_file = "${first.cert}"
key_file = "${first.key}"

[security]
enforce_https = true

[security.rate_limiting]
enabled = true

[security.ids]
enabled = true

[[vhosts]]
domains = ["site.test", "acme.test"]
root = "${dir}/www"
`,
    );
    const loaded = loadConfig(file);
    assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('\n'));
    config = loaded.config;
  });
  after(async () => {
    for (const master of masters) await master.stop();
  });

  it('an HTTPS listener starts with no certificate: a handshake fails with an alert, counted; TLS-ALPN-01 is served; certificates are taken when they come', async () => {
    const master = await start([{ type: 'TLS_INIT', certificates: [], ...TICKETS }]);
    await assert.rejects(handshake(httpsPort, { servername: 'site.test' }), /alert|handshake/i);
    await assert.rejects(handshake(httpsPort, {}), /alert|handshake/i, 'without SNI too');
    await waitFor('tls.handshake_failed in the metrics', () => master.rejected('tls.handshake_failed') >= 2);
    const plain = await request(httpPort, { path: '/', headers: { Host: 'site.test' } });
    assert.equal(plain.status, 301, 'plain HTTP serves on (enforce_https)');
    // The first certificate of a name can come by TLS-ALPN-01: its challenge is served with no certificate of ours yet.
    const challengeCert = ca.alpnChallenge('acme.test', KEY_AUTHORIZATION);
    master.post({
      type: 'ACME_CHALLENGES',
      version: 1,
      http01: [],
      tlsAlpn01: [
        { name: 'acme.test', certPem: readFileSync(challengeCert.cert, 'utf8'), keyPem: readFileSync(challengeCert.key, 'utf8') },
      ],
    });
    await waitFor('ACME_ACK 1', () => master.acks.includes(1));
    const validation = await handshake(httpsPort, { servername: 'acme.test', ALPNProtocols: ['acme-tls/1'] });
    validation.socket.destroy();
    assert.equal(validation.fingerprint, fingerprintOf(challengeCert.cert));
    master.post({ type: 'TLS_CERTS', certificates: [material('site.test', first)] });
    const later = await waitFor('a handshake with the certificate', () =>
      handshake(httpsPort, { servername: 'site.test' }).catch(() => null),
    );
    later.socket.destroy();
    assert.equal(later.fingerprint, fingerprintOf(first.cert));
    const failures = master.output.split('\n').filter((line) => line.includes('"event":"tls.handshake_failed"'));
    assert.ok(failures.length >= 2, 'each failed handshake logged');
    for (const line of failures) assert.equal((JSON.parse(line) as { level: number }).level, 20, 'at debug');
    assert.doesNotMatch(master.output, /PRIVATE KEY/);
    assert.deepEqual(master.invalid, []);
    await master.stop();
  });

  it('TLS_CERTS before CFG_START replaces the set TLS_INIT brought', async () => {
    const master = await start([
      { type: 'TLS_INIT', certificates: [material('site.test', first)], ...TICKETS },
      { type: 'TLS_CERTS', certificates: [material('site.test', second)] },
    ]);
    const seen = await handshake(httpsPort, { servername: 'site.test' });
    seen.socket.destroy();
    assert.equal(seen.fingerprint, fingerprintOf(second.cert));
    await master.stop();
  });

  it('certificates swapped while serving: open connections (HTTP/1.1 keep-alive, h2) continue untouched, new handshakes see the new one', async () => {
    const master = await start([{ type: 'TLS_INIT', certificates: [material('site.test', first)], ...TICKETS }]);
    const kept = await handshake(httpsPort, { servername: 'site.test', ALPNProtocols: ['http/1.1'] });
    assert.equal(kept.fingerprint, fingerprintOf(first.cert));
    assert.match(await requestOn(kept.socket, '/', 'site.test'), /^HTTP\/1\.1 200 /);
    const session = await h2Connect(httpsPort, 'site.test');
    assert.equal((await h2Request(session, { ':path': '/', ':authority': 'site.test' })).status, 200);
    await waitFor('both requests in the metrics', () => (master.responses.get('200 site.test') ?? 0) >= 2);

    master.post({ type: 'TLS_CERTS', certificates: [material('site.test', second)] });
    const fresh = await waitFor('a new handshake with the new certificate', async () => {
      const attempt = await handshake(httpsPort, { servername: 'site.test' });
      attempt.socket.destroy();
      return attempt.fingerprint === fingerprintOf(second.cert) ? attempt : null;
    });
    assert.ok(fresh);
    const withoutSni = await handshake(httpsPort, {});
    withoutSni.socket.destroy();
    assert.equal(withoutSni.fingerprint, fingerprintOf(second.cert), 'the default certificate was replaced too');

    assert.match(await requestOn(kept.socket, '/', 'site.test'), /^HTTP\/1\.1 200 /, 'the keep-alive connection serves on');
    assert.equal(kept.socket.getPeerCertificate().fingerprint256, fingerprintOf(first.cert), 'with the certificate it was made with');
    assert.equal((await h2Request(session, { ':path': '/', ':authority': 'site.test' })).status, 200, 'the h2 session serves on');
    const freshSession = await h2Connect(httpsPort, 'site.test');
    assert.equal(
      (await h2Request(freshSession, { ':path': '/', ':authority': 'site.test' })).status,
      200,
      'h2 is still negotiated with the new set',
    );
    assert.equal((freshSession.socket as tls.TLSSocket).getPeerCertificate().fingerprint256, fingerprintOf(second.cert));
    freshSession.close();
    kept.socket.destroy();
    session.close();
    assert.deepEqual(master.invalid, []);
    await master.stop();
  });

  describe('ACME HTTP-01', () => {
    let master: FakeMaster;
    before(async () => {
      // A set sent before CFG_START is served from the first connection on.
      master = await start([
        { type: 'TLS_INIT', certificates: [material('site.test', first)], ...TICKETS },
        { type: 'ACME_CHALLENGES', version: 7, http01: [[TOKEN, KEY_AUTHORIZATION]], tlsAlpn01: [] },
      ]);
      await waitFor('ACME_ACK 7', () => master.acks.includes(7));
    });
    after(() => master.stop());

    const challenge = `/.well-known/acme-challenge/${TOKEN}`;

    it('answers GET on the plain listener for any Host: 200 text/plain with the key authorization, not redirected, with the security headers', async () => {
      for (const host of ['site.test', 'not-a-vhost.test', '203.0.113.9']) {
        const answer = await request(httpPort, { path: challenge, headers: { Host: host } });
        assert.equal(answer.status, 200, host);
        assert.equal(answer.body, KEY_AUTHORIZATION);
        assert.match(String(answer.headers['content-type']), /^text\/plain/);
        assert.equal(answer.headers['x-frame-options'], 'DENY');
      }
    });

    it('HEAD gets the length and no body; another method 405 with Allow, audited', async () => {
      const head = await request(httpPort, { method: 'HEAD', path: challenge, headers: { Host: 'site.test' } });
      assert.equal(head.status, 200);
      assert.equal(Number(head.headers['content-length']), KEY_AUTHORIZATION.length);
      assert.equal(head.body, '');
      const post = await request(httpPort, { method: 'POST', path: challenge, headers: { Host: 'site.test' }, body: 'x' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.allow, 'GET, HEAD');
      await waitFor('audit', () => master.audits.find((event) => event.event === 'request.method_not_allowed'));
    });

    it('an unknown or malformed token is 404', async () => {
      for (const token of ['unknownTokenXYZ', 'abc.def', '..%2F..%2Fetc%2Fpasswd', `${TOKEN}/x`, '']) {
        const answer = await request(httpPort, { path: `/.well-known/acme-challenge/${token}`, headers: { Host: 'site.test' } });
        assert.equal(answer.status, 404, token);
      }
    });

    it('is answered over HTTPS (h2) as well', async () => {
      const session = await h2Connect(httpsPort, 'site.test');
      const answer = await h2Request(session, { ':path': challenge, ':authority': 'elsewhere.test' });
      session.close();
      assert.equal(answer.status, 200);
      assert.equal(answer.body, KEY_AUTHORIZATION);
    });

    it('is never rate-limited: with the master refusing every token, other requests get 429, the challenge 200', async () => {
      master.grantTokens = false;
      try {
        // Leases already granted run out within their life (250 ms); then the master's refusal shows.
        await waitFor('a 429', async () => (await request(httpPort, { path: '/', headers: { Host: 'site.test' } })).status === 429);
        assert.equal((await request(httpPort, { path: challenge, headers: { Host: 'site.test' } })).status, 200);
      } finally {
        master.grantTokens = true;
      }
    });

    it('keeps the newest set: a newer version replaces it and is acknowledged, an older one is ignored and not', async () => {
      const token = 'newerToken_0123456789-abcdefghijklmnopqrstuv';
      master.post({ type: 'ACME_CHALLENGES', version: 9, http01: [[token, `${token}.thumb`]], tlsAlpn01: [] });
      master.post({ type: 'ACME_CHALLENGES', version: 8, http01: [[TOKEN, KEY_AUTHORIZATION]], tlsAlpn01: [] });
      await waitFor('ACME_ACK 9', () => master.acks.includes(9));
      // Messages are handled in order: once a request after both is answered, 8 has been seen.
      assert.equal(
        (await request(httpPort, { path: `/.well-known/acme-challenge/${token}`, headers: { Host: 'site.test' } })).body,
        `${token}.thumb`,
      );
      assert.equal((await request(httpPort, { path: challenge, headers: { Host: 'site.test' } })).status, 404, 'the old token is gone');
      assert.deepEqual(master.acks, [7, 9]);
      assert.deepEqual(master.invalid, []);
    });
  });

  describe('ACME TLS-ALPN-01', () => {
    let master: FakeMaster;
    let challengeCert: { cert: string; key: string };
    before(async () => {
      challengeCert = ca.alpnChallenge('acme.test', KEY_AUTHORIZATION);
      master = await start([{ type: 'TLS_INIT', certificates: [material('site.test', first)], ...TICKETS }]);
      master.post({
        type: 'ACME_CHALLENGES',
        version: 1,
        http01: [],
        tlsAlpn01: [
          { name: 'acme.test', certPem: readFileSync(challengeCert.cert, 'utf8'), keyPem: readFileSync(challengeCert.key, 'utf8') },
        ],
      });
      await waitFor('ACME_ACK 1', () => master.acks.includes(1));
    });
    after(() => master.stop());

    it('a client offering acme-tls/1 for a name with a challenge gets that protocol and the challenge certificate, then the server closes', async () => {
      const seen = await handshake(httpsPort, { servername: 'acme.test', ALPNProtocols: ['acme-tls/1'] });
      assert.equal(seen.protocol, 'acme-tls/1');
      assert.equal(seen.fingerprint, fingerprintOf(challengeCert.cert));
      const x509 = new X509Certificate(seen.certificate.raw);
      assert.equal(x509.subjectAltName, 'DNS:acme.test');
      // The server ends the connection without a byte of application data.
      const received = await new Promise<string>((resolve) => {
        let text = '';
        seen.socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
        seen.socket.on('close', () => resolve(text));
      });
      assert.equal(received, '');
    });

    it('acme-tls/1 comes before h2 when both are offered for a challenge name; h2 and the site certificate otherwise', async () => {
      const both = await handshake(httpsPort, { servername: 'acme.test', ALPNProtocols: ['h2', 'acme-tls/1'] });
      both.socket.destroy();
      assert.equal(both.protocol, 'acme-tls/1');
      const ordinary = await handshake(httpsPort, { servername: 'acme.test', ALPNProtocols: ['h2', 'http/1.1'] });
      ordinary.socket.destroy();
      assert.equal(ordinary.protocol, 'h2');
      assert.equal(ordinary.fingerprint, fingerprintOf(first.cert));
    });

    it('without a challenge for the name, an acme-tls/1-only client gets an alert (no protocol); the worker serves on', async () => {
      await assert.rejects(
        handshake(httpsPort, { servername: 'site.test', ALPNProtocols: ['acme-tls/1'] }),
        /no application protocol|NO_APPLICATION_PROTOCOL/i,
      );
      master.post({ type: 'ACME_CHALLENGES', version: 2, http01: [], tlsAlpn01: [] });
      await waitFor('ACME_ACK 2', () => master.acks.includes(2));
      await assert.rejects(
        handshake(httpsPort, { servername: 'acme.test', ALPNProtocols: ['acme-tls/1'] }),
        /no application protocol|NO_APPLICATION_PROTOCOL/i,
        'a challenge withdrawn is no longer served',
      );
      const session = await h2Connect(httpsPort, 'site.test');
      assert.equal((await h2Request(session, { ':path': '/', ':authority': 'site.test' })).status, 200);
      session.close();
      assert.deepEqual(master.invalid, []);
    });
  });
});

describe('Node runs the ALPN callback before the SNI callback (what TLS-ALPN-01 relies on)', () => {
  it("both get the handshake's TLS socket as `this`, the ALPN callback first, with the server name", async () => {
    const dir = tempDir();
    const ca = new TestCa(dir);
    const site = ca.issue('site', ['order.test']);
    const calls: string[] = [];
    let alpnSocket: unknown = null;
    let sniSocket: unknown = null;
    const server = tls.createServer({
      key: readFileSync(site.key),
      cert: readFileSync(site.cert),
      ALPNCallback(this: tls.TLSSocket, { servername, protocols }) {
        calls.push(`alpn ${servername} ${protocols.join(',')}`);
        alpnSocket = this;
        return protocols[0];
      },
      SNICallback(this: tls.TLSSocket, servername, callback) {
        calls.push(`sni ${servername}`);
        sniSocket = this;
        callback(null, undefined);
      },
    });
    const accepted = new Promise<tls.TLSSocket>((resolve) => server.once('secureConnection', resolve));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const client = await handshake(port, { servername: 'order.test', ALPNProtocols: ['acme-tls/1'] });
    const serverSide = await accepted;
    client.socket.destroy();
    server.close();
    assert.deepEqual(calls, ['alpn order.test acme-tls/1', 'sni order.test']);
    assert.ok(alpnSocket instanceof tls.TLSSocket);
    assert.equal(alpnSocket, sniSocket);
    assert.equal(alpnSocket, serverSide);
  });
});
