/**
 * Certificates from a provider, end to end through the real server: the
 * master orders from a real ACME server (Debian's pebble, with
 * pebble-challtestsrv as its DNS), the sandboxed workers answer the
 * challenges — HTTP-01 on the HTTP listener, TLS-ALPN-01 on the HTTPS one,
 * DNS-01 through an exec program — and then serve the certificate; short-
 * lived certificates are renewed without a restart or a dropped connection;
 * a failing renewal keeps the certificate served. Cloudflare Origin CA
 * against the API stub (test/stubs/cloudflare-api.ts).
 */
import assert from 'node:assert/strict';
import type { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { startPebble, type Pebble } from '../support/pebble.js';
import { TestCa } from '../support/test-ca.js';
import { BIN, cli, freePort, TestServer, waitFor } from '../support/harness.js';
import { CloudflareApiStub } from '../support/cloudflare-api.js';

interface CertView {
  name: string;
  source: string;
  notAfter: string | null;
  fingerprint256: string | null;
  nextRenewal: string | null;
  lastError: string | null;
}

function certs(server: TestServer): CertView[] {
  const result = cli(['certs', '-c', server.configFile, '--json']);
  assert.equal(result.status, 0, result.stderr);
  return (JSON.parse(result.stdout) as { certificates: CertView[] }).certificates;
}

function certOf(server: TestServer, name: string): CertView | undefined {
  return certs(server).find((view) => view.name === name);
}

/** The certificate a new handshake for `servername` gets, verified against `ca`. */
function handshake(
  port: number,
  servername: string,
  ca: string,
  alpn?: string[],
): Promise<{ cert: X509Certificate; authorized: boolean; error: string | null; protocol: string | false | null }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: '127.0.0.1', port, servername, ca, rejectUnauthorized: false, ...(alpn && { ALPNProtocols: alpn }) },
      () => {
        const peer = socket.getPeerX509Certificate();
        socket.destroy();
        if (peer === undefined) reject(new Error('no certificate'));
        else
          resolve({
            cert: peer,
            authorized: socket.authorized,
            error: socket.authorizationError?.message ?? null,
            protocol: socket.alpnProtocol,
          });
      },
    );
    socket.on('error', reject);
  });
}

const fingerprintOf = (cert: X509Certificate): string => cert.fingerprint256;

/** One TLS connection speaking HTTP/1.1 keep-alive: each get() sends a request and reads its whole answer. */
async function keepAliveConnection(
  port: number,
  servername: string,
  ca: string,
): Promise<{ socket: tls.TLSSocket; get(path: string): Promise<string> }> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, ALPNProtocols: ['http/1.1'] });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (buffered += chunk));
  const get = async (target: string): Promise<string> => {
    buffered = '';
    socket.write(`GET ${target} HTTP/1.1\r\nHost: ${servername}\r\n\r\n`);
    return waitFor(
      'a whole answer',
      () => {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return null;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        return buffered.length >= end + 4 + length ? buffered : null;
      },
      5000,
    );
  };
  return { socket, get };
}

/** The server's config for the provider, after [server]. */
function acmeConfig(
  server: TestServer,
  pebble: Pebble,
  httpsPort: number,
  options: { names: string[]; preferred: string[]; dnsCommand?: string },
): string {
  return `[ssl]
provider = "acme"
acme_server = "${pebble.directoryUrl}"
agree_tos = true
email = "admin@example.com"
cert_dir = "${server.dir}/certs"
domains = ${JSON.stringify(options.names)}
[ssl.challenges]
preferred = ${JSON.stringify(options.preferred)}
http_01_port = ${server.port}
tls_alpn_01_port = ${httpsPort}
${options.dnsCommand ? `dns_01_provider = "exec"\ndns_01_command = "${options.dnsCommand}"\ndns_01_propagation_delay = 0\n` : ''}
[[vhosts]]
domains = ["*"]
root = "${server.dir}/www"
`;
}

/** A lego-style exec DNS program that sets and clears TXT records in pebble-challtestsrv. */
function writeDnsProgram(dir: string, challtestsrvUrl: string): string {
  const file = path.join(dir, 'acme-dns.sh');
  writeFileSync(
    file,
    `#!/bin/sh
# present|cleanup <fqdn.> <value>
case "$1" in
  present) exec curl -fsS -X POST -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" ${challtestsrvUrl}/set-txt ;;
  cleanup) exec curl -fsS -X POST -d "{\\"host\\":\\"$2\\"}" ${challtestsrvUrl}/clear-txt ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
`,
  );
  chmodSync(file, 0o755);
  return file;
}

describe('ACME through the real server (pebble)', () => {
  const server = new TestServer();
  let pebble: Pebble;
  let root: string;
  let httpsPort: number;
  /** The config after [server], as last written. */
  let body = '';
  const serverKeys = (): string => `https_port = ${httpsPort}\n`;
  const reloadWith = (next: string): void => {
    body = next;
    server.writeConfig(body, serverKeys());
    const reloaded = cli(['reload', '-c', server.configFile]);
    assert.equal(reloaded.status, 0, reloaded.stderr);
  };

  before(async () => {
    server.port = await freePort();
    httpsPort = await freePort();
    pebble = await startPebble({ httpPort: server.port, tlsPort: httpsPort });
    root = await pebble.issuingRoot();
    server.launch = (argv) => ({ file: BIN, args: argv, env: { ...process.env, ...pebble.env } });
    const www = path.join(server.dir, 'www');
    mkdirSync(www, { recursive: true });
    writeFileSync(path.join(www, 'index.html'), 'hello over acme\n');
  });

  after(async () => {
    await server.stop();
    await pebble?.stop();
  });

  it('HTTP-01: the workers answer the challenge on the HTTP listener, then serve the certificate by SNI', async () => {
    body = acmeConfig(server, pebble, httpsPort, { names: ['http.test'], preferred: ['http-01'] });
    await server.start(body, serverKeys());
    const view = await waitFor('http.test obtained', () => certOf(server, 'http.test')?.notAfter ?? null, 60_000);
    assert.ok(Date.parse(view) > Date.now());
    const got = await handshake(httpsPort, 'http.test', root);
    assert.equal(got.authorized, true, got.error ?? '');
    assert.match(got.cert.subjectAltName ?? '', /DNS:http\.test/);
    assert.equal(certOf(server, 'http.test')?.source, 'acme');
    assert.equal(certOf(server, 'http.test')?.lastError, null);
    assert.ok(certOf(server, 'http.test')?.nextRenewal, 'a renewal is scheduled');
  });

  it('keeps the account and the certificate root-only in cert_dir; no key reaches the log', () => {
    const certDir = path.join(server.dir, 'certs');
    assert.equal(statSync(certDir).mode & 0o777, 0o700);
    const authorities = readdirSync(path.join(certDir, 'acme'));
    assert.equal(authorities.length, 1, 'one CA');
    assert.match(authorities[0]!, /^127\.0\.0\.1_\d+-[0-9a-f]{12}$/);
    const stored = path.join(certDir, 'acme', authorities[0]!, 'http.test');
    assert.equal(statSync(path.join(stored, 'key.pem')).mode & 0o777, 0o600);
    const accounts = readdirSync(path.join(certDir, 'acme-accounts'));
    assert.equal(accounts.length, 1);
    assert.equal(statSync(path.join(certDir, 'acme-accounts', accounts[0]!, 'account.key')).mode & 0o777, 0o600);
    assert.doesNotMatch(server.output, /PRIVATE KEY/);
    assert.doesNotMatch(
      server.output,
      new RegExp(readFileSync(path.join(stored, 'key.pem'), 'utf8').split('\n')[1]!.slice(0, 40).replace(/[+/]/g, '.')),
    );
  });

  it('TLS-ALPN-01: answered on the HTTPS port beside h2 and http/1.1 (a name added by reload)', async () => {
    reloadWith(acmeConfig(server, pebble, httpsPort, { names: ['http.test', 'alpn.test'], preferred: ['tls-alpn-01'] }));
    await waitFor('alpn.test obtained', () => certOf(server, 'alpn.test')?.notAfter ?? null, 60_000);
    const got = await handshake(httpsPort, 'alpn.test', root, ['h2', 'http/1.1']);
    assert.equal(got.authorized, true, got.error ?? '');
    assert.equal(got.protocol, 'h2');
    assert.match(server.output, /"domain":"alpn\.test".*certificate obtained/);
    // http.test was kept, not ordered again.
    assert.equal((server.output.match(/"domain":"http\.test"[^\n]*obtaining certificate/g) ?? []).length, 1);
  });

  it('DNS-01 through the exec provider: a wildcard', async () => {
    const program = writeDnsProgram(server.dir, pebble.challtestsrvUrl);
    reloadWith(
      acmeConfig(server, pebble, httpsPort, {
        names: ['http.test', 'alpn.test', '*.dns.test'],
        preferred: ['http-01'],
        dnsCommand: program,
      }),
    );
    await waitFor('*.dns.test obtained', () => certOf(server, '*.dns.test')?.notAfter ?? null, 60_000);
    const got = await handshake(httpsPort, 'www.dns.test', root);
    assert.equal(got.authorized, true, got.error ?? '');
    assert.match(got.cert.subjectAltName ?? '', /DNS:\*\.dns\.test/);
    // The other names keep theirs.
    assert.match((await handshake(httpsPort, 'http.test', root)).cert.subjectAltName ?? '', /DNS:http\.test/);
  });

  it('a restart serves the stored certificates and orders nothing', async () => {
    const before = certOf(server, 'http.test')!.fingerprint256;
    await server.halt();
    await server.start(body, serverKeys());
    assert.equal(certOf(server, 'http.test')?.fingerprint256, before);
    assert.equal(fingerprintOf((await handshake(httpsPort, 'http.test', root)).cert), before);
    assert.doesNotMatch(server.output, /obtaining certificate/);
  });
});

describe('ACME configuration refused on reload', () => {
  it('a cert_dir others may enter is refused with the key named; the running generation keeps serving', async () => {
    const server = new TestServer();
    const httpsPort = await freePort();
    try {
      mkdirSync(path.join(server.dir, 'certs'), { mode: 0o700 });
      const body = `[ssl]\nprovider = "acme"\nagree_tos = true\nacme_server = "https://127.0.0.1:9/dir"\ncert_dir = "${server.dir}/certs"\ndomains = ["a.test"]\n[ssl.challenges]\npreferred = ["tls-alpn-01"]\ntls_alpn_01_port = ${httpsPort}\n[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`;
      await server.start(body, `https_port = ${httpsPort}\n`);
      const generation = server.status().master.generation;
      chmodSync(path.join(server.dir, 'certs'), 0o755);
      const reloaded = cli(['reload', '-c', server.configFile]);
      assert.notEqual(reloaded.status, 0);
      assert.match(reloaded.stderr + reloaded.stdout, /ssl\.cert_dir: .*open to group or others/);
      assert.equal(server.status().master.generation, generation, 'the running generation stays');
    } finally {
      await server.stop();
    }
  });
});

describe('renewal of short-lived certificates (pebble, 40 s certificates)', () => {
  const server = new TestServer();
  let pebble: Pebble;
  let root: string;
  let httpsPort: number;

  before(async () => {
    server.port = await freePort();
    httpsPort = await freePort();
    pebble = await startPebble({ httpPort: server.port, tlsPort: httpsPort, certificateValiditySeconds: 40 });
    root = await pebble.issuingRoot();
    server.launch = (argv) => ({ file: BIN, args: argv, env: { ...process.env, ...pebble.env } });
    mkdirSync(path.join(server.dir, 'www'), { recursive: true });
    writeFileSync(path.join(server.dir, 'www', 'index.html'), 'renewed\n');
    await server.start(
      acmeConfig(server, pebble, httpsPort, { names: ['renew.test'], preferred: ['http-01'] }),
      `https_port = ${httpsPort}\n`,
    );
    await waitFor('renew.test obtained', () => certOf(server, 'renew.test')?.notAfter ?? null, 60_000);
  });

  after(async () => {
    await server.stop();
    await pebble?.stop();
  });

  it('renews a third of the lifetime before expiry; every new handshake gets it, open connections and workers stay', async () => {
    const first = certOf(server, 'renew.test')!;
    const workers = server
      .status()
      .workers.map((worker) => worker.pid)
      .sort();
    const due = Date.parse(first.nextRenewal!);
    const lifetime = Date.parse(first.notAfter!) - due;
    assert.ok(lifetime > 10_000 && lifetime < 16_000, `renewal due a third of 40 s before expiry, got ${lifetime} ms`);
    // A keep-alive connection opened before the renewal, idle across it.
    const open = await keepAliveConnection(httpsPort, 'renew.test', root);
    assert.match(await open.get('/'), /^HTTP\/1\.1 200 /);
    assert.equal(open.socket.getPeerX509Certificate()?.fingerprint256, first.fingerprint256);
    const renewed = await waitFor(
      'renewed',
      () => {
        const now = certOf(server, 'renew.test')!;
        return now.fingerprint256 !== first.fingerprint256 ? now : null;
      },
      60_000,
    );
    assert.match(await open.get('/'), /^HTTP\/1\.1 200 /, 'the connection opened before the renewal still serves');
    open.socket.destroy();
    for (let i = 0; i < 6; i++) assert.equal(fingerprintOf((await handshake(httpsPort, 'renew.test', root)).cert), renewed.fingerprint256);
    assert.deepEqual(
      server
        .status()
        .workers.map((worker) => worker.pid)
        .sort(),
      workers,
      'no worker was restarted',
    );
  });

  it('a failing renewal keeps the certificate served, says why, and succeeds on a retry', async () => {
    // pebble resolves names through challtestsrv: point renew.test where nothing listens.
    const post = (route: string, body: unknown) =>
      fetch(`${pebble.challtestsrvUrl}/${route}`, { method: 'POST', body: JSON.stringify(body) });
    await post('add-a', { host: 'renew.test.', addresses: ['127.0.0.2'] });
    const served = certOf(server, 'renew.test')!;
    const failed = await waitFor('renewal failed', () => certOf(server, 'renew.test')?.lastError ?? null, 60_000);
    assert.match(failed, /renew\.test/);
    assert.match(failed, /http-01/);
    const now = certOf(server, 'renew.test')!;
    assert.equal(now.fingerprint256, served.fingerprint256, 'the old certificate is kept');
    assert.equal(fingerprintOf((await handshake(httpsPort, 'renew.test', root)).cert), served.fingerprint256);
    assert.match(server.output, /certificate renewal failed/);
    await post('clear-a', { host: 'renew.test.' });
    await waitFor(
      'renewed after the failure',
      () => {
        const view = certOf(server, 'renew.test')!;
        return view.fingerprint256 !== served.fingerprint256 && view.lastError === null ? view : null;
      },
      60_000,
    );
  });
});

describe('Cloudflare Origin CA through the real server (API stub)', () => {
  const server = new TestServer();
  const token = 'cf-origin-token-0123456789abcdef';
  let stub: CloudflareApiStub;
  let originCa: TestCa;
  let httpsPort: number;

  before(async () => {
    originCa = new TestCa(server.dir, 'CloudFlare Origin SSL ECC Certificate Authority', 'origin-ca');
    stub = await CloudflareApiStub.start({ token, zones: [{ id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'example.com' }], originCa });
    httpsPort = await freePort();
    server.launch = (argv) => ({ file: BIN, args: argv, env: { ...process.env, CF_ORIGIN_TOKEN: token } });
  });

  after(async () => {
    await server.stop();
    await stub?.close();
  });

  it('obtains the certificate with the token from the environment and serves it; the token is never logged', async () => {
    await server.start(
      `[ssl]\nprovider = "cloudflare"\napi_token = "\${CF_ORIGIN_TOKEN}"\ncloudflare_api_url = "${stub.baseUrl}"\ncert_dir = "${server.dir}/certs"\ndomains = ["origin.example.com"]\n[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`,
      `https_port = ${httpsPort}\n`,
    );
    await waitFor('origin.example.com obtained', () => certOf(server, 'origin.example.com')?.notAfter ?? null, 30_000);
    const got = await handshake(httpsPort, 'origin.example.com', readFileSync(originCa.certFile, 'utf8'));
    assert.equal(got.authorized, true, got.error ?? '');
    assert.equal(certOf(server, 'origin.example.com')?.source, 'cloudflare');
    const request = stub.requests.find((entry) => entry.method === 'POST' && entry.path.endsWith('/certificates'));
    assert.ok(request, 'POST /certificates was made');
    assert.doesNotMatch(server.output, new RegExp(token));
  });
});
