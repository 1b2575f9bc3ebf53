/**
 * src/tls: certificate loading and checks, SNI lookup, cipher policy and
 * shared session tickets, against certificates made by the openssl command
 * line at test time and real TLS handshakes on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { loadCertificate, type CertificateFiles, type CertificateLoadResult, type LoadedCertificate } from '../../src/tls/certificates.js';
import { tlsPolicy, TlsPolicyError, validateCiphers, type TlsPolicy } from '../../src/tls/policy.js';
import { dnsNameCovers, parseDnsName, SniTable } from '../../src/tls/sni.js';
import { TICKET_KEY_BYTES, TicketKeyRing } from '../../src/tls/ticket-keys.js';

const DAY_MS = 24 * 60 * 60 * 1000;

let dir = '';
const file = (name: string): string => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKey(name: string, algorithm: 'ec' | 'rsa1024' = 'ec'): string {
  const path = file(`${name}.key`);
  if (algorithm === 'ec') openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path);
  else openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', path);
  chmodSync(path, 0o600);
  return path;
}

function selfSignedCa(name: string): void {
  const key = newKey(name);
  openssl('req', '-x509', '-new', '-key', key, '-subj', `/CN=${name}`, '-days', '30', '-out', file(`${name}.crt`));
}

/** A leaf certificate signed by the CA `ca`, with the given SANs (none: a CN-only certificate). */
function leaf(name: string, ca: string, sans: string[], days = 30, key = newKey(name)): void {
  const csr = file(`${name}.csr`);
  openssl('req', '-new', '-key', key, '-subj', `/CN=${sans[0]?.replace('DNS:', '') ?? name}`, '-out', csr);
  const extensions = file(`${name}.ext`);
  writeFileSync(extensions, sans.length > 0 ? `subjectAltName=${sans.join(',')}\n` : 'basicConstraints=CA:FALSE\n');
  openssl(
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    file(`${ca}.crt`),
    '-CAkey',
    file(`${ca}.key`),
    '-CAcreateserial',
    '-days',
    String(days),
    '-extfile',
    extensions,
    '-out',
    file(`${name}.crt`),
  );
}

function files(name: string, cert: string, key = cert, chain?: string): CertificateFiles {
  const result: CertificateFiles = { name, certFile: file(`${cert}.crt`), keyFile: file(`${key}.key`) };
  if (chain !== undefined) result.chainFile = file(`${chain}.crt`);
  return result;
}

/** Every loadCertificate result of this file, for the key-leak check at the end. */
const results: CertificateLoadResult[] = [];

function load(certificateFiles: CertificateFiles, now?: Date): CertificateLoadResult {
  const result = loadCertificate(certificateFiles, now);
  results.push(result);
  return result;
}

function loaded(certificateFiles: CertificateFiles): LoadedCertificate {
  const result = load(certificateFiles);
  assert.ok(result.ok, result.ok ? '' : result.problem);
  return result.certificate;
}

function problemCode(result: CertificateLoadResult): string {
  return result.ok ? 'ok' : result.code;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'miwidothttp-tls-'));
  selfSignedCa('ca');
  selfSignedCa('other-ca');
  leaf('site', 'ca', ['DNS:site.example.test', 'DNS:WWW.example.test']);
  leaf('wildcard', 'ca', ['DNS:*.example.test']);
  leaf('expired', 'ca', ['DNS:site.example.test'], -1); // notAfter before notBefore: expired now
  leaf('cn-only', 'ca', []);
  leaf('weak', 'ca', ['DNS:site.example.test'], 30, newKey('weak', 'rsa1024'));
  newKey('stranger');
  writeFileSync(file('fullchain.crt'), readFileSync(file('site.crt'), 'latin1') + readFileSync(file('ca.crt'), 'latin1'));
  writeFileSync(file('loose.key'), readFileSync(file('site.key')));
  chmodSync(file('loose.key'), 0o644);
  const keyLines = readFileSync(file('site.key'), 'latin1').split('\n');
  writeFileSync(file('truncated.key'), `${keyLines.slice(0, 3).join('\n')}\n`, { mode: 0o600 });
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('loadCertificate', () => {
  it('accepts a valid pair with its chain and reports what it found', () => {
    const result = load(files('site.example.test', 'site', 'site', 'ca'));
    assert.ok(result.ok);
    assert.deepEqual(result.warnings, []);
    const certificate = result.certificate;
    assert.deepEqual(certificate.subjectNames, ['site.example.test', 'www.example.test']);
    assert.match(certificate.issuer, /CN=ca/);
    assert.match(certificate.certPem, /^-----BEGIN CERTIFICATE-----/);
    assert.match(certificate.keyPem, /^-----BEGIN PRIVATE KEY-----/);
    assert.equal(certificate.chainPem, readFileSync(file('ca.crt'), 'latin1'));
    assert.match(certificate.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.ok(certificate.notBefore.getTime() <= Date.now() && Date.now() < certificate.notAfter.getTime());
  });

  it('takes intermediates that follow the leaf in cert_file (a fullchain file)', () => {
    const certificate = loaded({ name: 'www.example.test', certFile: file('fullchain.crt'), keyFile: file('site.key') });
    assert.equal(certificate.certPem, readFileSync(file('site.crt'), 'latin1'));
    assert.equal(certificate.chainPem, readFileSync(file('ca.crt'), 'latin1'));
  });

  it('matches names case-insensitively and ignores a trailing dot', () => {
    loaded(files('SITE.Example.Test.', 'site'));
  });

  const refusals: [what: string, certificateFiles: () => CertificateFiles, code: string, now?: Date][] = [
    ['a key that belongs to another certificate', () => files('site.example.test', 'site', 'stranger'), 'key_mismatch'],
    ['an expired certificate', () => files('site.example.test', 'expired'), 'expired'],
    ['a certificate past its notAfter at `now`', () => files('site.example.test', 'site'), 'expired', new Date(Date.now() + 31 * DAY_MS)],
    [
      'a certificate before its notBefore at `now`',
      () => files('site.example.test', 'site'),
      'not_yet_valid',
      new Date(Date.now() - DAY_MS),
    ],
    ['a chain whose CA did not issue the leaf', () => files('site.example.test', 'site', 'site', 'other-ca'), 'chain_mismatch'],
    ['a chain_file that is not a certificate', () => ({ ...files('site.example.test', 'site'), chainFile: file('site.key') }), 'bad_chain'],
    ['a missing cert_file', () => files('site.example.test', 'absent', 'site'), 'unreadable_file'],
    ['a missing key_file', () => files('site.example.test', 'site', 'absent'), 'unreadable_file'],
    ['a directory as cert_file', () => ({ ...files('site.example.test', 'site'), certFile: dir }), 'not_a_file'],
    ['a key in place of the certificate', () => ({ ...files('site.example.test', 'site'), certFile: file('site.key') }), 'bad_certificate'],
    ['a truncated key', () => files('site.example.test', 'site', 'truncated'), 'bad_key'],
    ['a certificate in place of the key', () => ({ ...files('site.example.test', 'site'), keyFile: file('site.crt') }), 'bad_key'],
    ['a 1024-bit RSA key', () => files('site.example.test', 'weak'), 'weak_key'],
    ['a name the SANs do not cover', () => files('other.example.test', 'site'), 'name_not_covered'],
    ['a wildcard name over exact SANs', () => files('*.example.test', 'site'), 'name_not_covered'],
    ['the bare parent of a wildcard', () => files('example.test', 'wildcard'), 'name_not_covered'],
    ['two labels under a wildcard', () => files('a.b.example.test', 'wildcard'), 'name_not_covered'],
    ['an invalid name', () => files('exa mple.test', 'site'), 'invalid_name'],
  ];
  for (const [what, certificateFiles, code, now] of refusals) {
    it(`refuses ${what} (${code})`, () => {
      assert.equal(problemCode(load(certificateFiles(), now)), code);
    });
  }

  it('names the file and the errno when a file is missing', () => {
    const result = load(files('site.example.test', 'site', 'absent'));
    assert.ok(!result.ok);
    assert.ok(result.problem.includes(file('absent.key')));
    assert.ok(result.problem.includes('ENOENT'));
  });

  it('says when a certificate expired', () => {
    const now = new Date(Date.now() + 31 * DAY_MS);
    const result = load(files('site.example.test', 'site'), now);
    assert.ok(!result.ok);
    const notAfter = new Date(
      execFileSync('openssl', ['x509', '-in', file('site.crt'), '-noout', '-enddate'], { encoding: 'utf8' })
        .trim()
        .slice('notAfter='.length),
    );
    assert.ok(result.problem.includes(notAfter.toISOString()));
  });

  it('lets a wildcard certificate serve one label below it', () => {
    assert.deepEqual(loaded(files('a.example.test', 'wildcard')).subjectNames, ['*.example.test']);
    loaded(files('*.example.test', 'wildcard'));
  });

  it('warns about a key readable by group or others', () => {
    const result = load(files('site.example.test', 'site', 'loose'));
    assert.ok(result.ok);
    assert.equal(result.warnings.length, 1);
    assert.match(result.warnings[0] ?? '', /0644/);
  });

  it('warns about a certificate expiring soon and one with no DNS SAN', () => {
    const soon = load(files('site.example.test', 'site'), new Date(Date.now() + 25 * DAY_MS));
    assert.ok(soon.ok);
    assert.equal(soon.warnings.length, 1);
    const cnOnly = load(files('cn-only', 'cn-only'));
    assert.ok(cnOnly.ok, cnOnly.ok ? '' : cnOnly.problem);
    assert.deepEqual(cnOnly.certificate.subjectNames, ['cn-only']);
    assert.equal(cnOnly.warnings.length, 1);
  });

  // Runs last in this suite: it reads every result collected above.
  it('never puts key material in a problem or a warning', () => {
    const failures = results.filter((result) => !result.ok);
    assert.ok(failures.length >= refusals.length);
    const keyLines = ['site', 'stranger', 'weak', 'ca', 'other-ca', 'wildcard', 'expired', 'cn-only']
      .flatMap((name) => readFileSync(file(`${name}.key`), 'latin1').split('\n'))
      .filter((line) => line.length >= 16 && !line.startsWith('-----'));
    assert.ok(keyLines.length > 0);
    for (const result of results) {
      const texts = [...result.warnings, ...(result.ok ? [] : [result.problem])];
      for (const text of texts) {
        assert.ok(!text.includes('PRIVATE KEY'), text);
        for (const line of keyLines) {
          assert.ok(!text.includes(line) && !text.includes(line.slice(0, 16)), `key text in: ${text}`);
        }
      }
    }
  });
});

describe('DNS names', () => {
  const cases: [text: string, wildcard: boolean, parsed: string | null][] = [
    ['Example.COM.', false, 'example.com'],
    ['*.example.com', true, '*.example.com'],
    ['*.example.com', false, null],
    ['*.com', true, null],
    ['w*.example.com', true, null],
    ['a.*.example.com', true, null],
    ['192.0.2.1', false, null],
    ['-a.example.com', false, null],
    ['a..example.com', false, null],
    ['under_score.example.com', false, null],
    ['xn--bcher-kva.example', false, 'xn--bcher-kva.example'],
    ['localhost', false, 'localhost'],
    ['', false, null],
    [`${'a'.repeat(64)}.example`, false, null],
  ];
  for (const [text, wildcard, parsed] of cases) {
    it(`parseDnsName(${JSON.stringify(text)}, ${wildcard}) = ${String(parsed)}`, () => {
      assert.equal(parseDnsName(text, wildcard), parsed);
    });
  }

  it('a wildcard covers exactly one label (RFC 6125 §6.4.3)', () => {
    assert.ok(dnsNameCovers('*.example.com', 'a.example.com'));
    assert.ok(!dnsNameCovers('*.example.com', 'example.com'));
    assert.ok(!dnsNameCovers('*.example.com', 'a.b.example.com'));
    assert.ok(dnsNameCovers('*.example.com', '*.example.com'));
    assert.ok(!dnsNameCovers('a.example.com', '*.example.com'));
  });
});

describe('SniTable', () => {
  const table = new SniTable<string>();
  table.add('example.test', 'apex');
  table.add('*.example.test', 'wildcard');
  table.add('exact.example.test', 'exact');
  table.add('Mixed.Example.Test.', 'mixed');

  const cases: [serverName: string | undefined, value: string][] = [
    ['exact.example.test', 'exact'],
    ['EXACT.example.TEST', 'exact'],
    ['exact.example.test.', 'exact'],
    ['mixed.example.test', 'mixed'],
    ['other.example.test', 'wildcard'],
    ['example.test', 'apex'],
    ['a.b.example.test', 'apex'], // one label only: falls to the default (the first added)
    ['unrelated.test', 'apex'],
    ['127.0.0.1', 'apex'],
    ['bad name', 'apex'],
    ['', 'apex'],
    [undefined, 'apex'],
  ];
  for (const [serverName, value] of cases) {
    it(`${JSON.stringify(serverName)} -> ${value}`, () => {
      assert.equal(table.match(serverName as string), value);
    });
  }

  it('uses an explicit default over the first added value', () => {
    const withDefault = new SniTable<string>('fallback');
    withDefault.add('a.test', 'a');
    assert.equal(withDefault.match('b.test'), 'fallback');
    const later = new SniTable<string>();
    later.add('a.test', 'a');
    later.setDefault('set');
    assert.equal(later.match(undefined), 'set');
    assert.equal(new SniTable<string>().match('a.test'), null);
  });

  it('rejects invalid and duplicate names', () => {
    const strict = new SniTable<number>();
    strict.add('a.test', 1);
    for (const name of ['*', '*.test', 'a b.test', '10.0.0.1', 'A.TEST.', '']) {
      assert.throws(() => strict.add(name, 2), Error, name);
    }
  });
});

describe('tlsPolicy', () => {
  it('defaults to ECDHE + AEAD for TLS 1.2 and all TLS 1.3 suites, no CBC or DHE', () => {
    const policy = tlsPolicy('1.2', undefined);
    assert.equal(policy.minVersion, 'TLSv1.2');
    assert.equal(
      policy.ciphers,
      'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:' +
        'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:' +
        'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305',
    );
    assert.doesNotMatch(policy.ciphers, /CBC|SHA(:|$)|(^|:)DHE|RC4|3DES/);
    assert.equal(policy.ecdhCurve, 'X25519:P-256:P-384');
    assert.equal(tlsPolicy('1.3', undefined).minVersion, 'TLSv1.3');
  });

  it("translates config/production.toml's four IANA names and keeps TLS 1.3 on", () => {
    const policy = tlsPolicy('1.2', [
      'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
      'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
      'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
      'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
    ]);
    assert.equal(
      policy.ciphers,
      'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:' +
        'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305',
    );
  });

  it('accepts OpenSSL names and a TLS 1.3 preference', () => {
    const policy = tlsPolicy('1.2', ['TLS_CHACHA20_POLY1305_SHA256', 'ECDHE-RSA-AES128-GCM-SHA256']);
    assert.equal(policy.ciphers, 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:ECDHE-RSA-AES128-GCM-SHA256');
  });

  const refused = [
    'TLS_RSA_WITH_AES_128_CBC_SHA',
    'TLS_RSA_WITH_AES_128_GCM_SHA256',
    'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256',
    'ECDHE-RSA-AES128-SHA256',
    'ECDHE-RSA-AES128-SHA',
    'AES128-GCM-SHA256',
    'RC4-SHA',
    'DES-CBC3-SHA',
    'TLS_RSA_WITH_NULL_SHA256',
    'EXP-RC4-MD5',
    'ADH-AES128-GCM-SHA256',
    'DHE-RSA-AES128-GCM-SHA256',
    'HIGH',
    'ECDHE-RSA-AES128-GCM-SHA256:RC4-SHA',
    'TLS_MADE_UP_WITH_ROT13',
  ];
  for (const name of refused) {
    it(`refuses ${name}`, () => {
      const problems = validateCiphers(['ECDHE-RSA-AES128-GCM-SHA256', name]);
      assert.equal(problems.length, 1);
      assert.ok(problems[0]?.includes(JSON.stringify(name)));
      assert.throws(
        () => tlsPolicy('1.2', [name]),
        (error: unknown) => error instanceof TlsPolicyError && error.code === 'ERR_TLS_POLICY',
      );
    });
  }

  it('refuses an empty list, and a TLS 1.3-only list when TLS 1.2 is allowed', () => {
    assert.equal(validateCiphers([]).length, 1);
    assert.equal(validateCiphers(['TLS_AES_128_GCM_SHA256'], '1.2').length, 1);
    assert.deepEqual(validateCiphers(['TLS_AES_128_GCM_SHA256'], '1.3'), []);
  });
});

describe('TicketKeyRing', () => {
  it('makes 48-byte keys, keeps the previous one, and derives a stable context', () => {
    const secret = Buffer.alloc(32, 7);
    const ring = new TicketKeyRing(secret, 0);
    const first = ring.current();
    assert.equal(first.length, TICKET_KEY_BYTES);
    assert.equal(ring.previous(), null);
    assert.ok(!ring.isRotationDue(60_000));
    assert.ok(ring.isRotationDue(12 * 60 * 60 * 1000));
    const second = ring.rotate(1);
    assert.notDeepEqual(second, first);
    assert.deepEqual(ring.previous(), first);
    assert.deepEqual(ring.current(), second);
    ring.current().fill(0);
    assert.deepEqual(ring.current(), second);

    const context = ring.sessionIdContext('generation-1');
    assert.match(context, /^[0-9a-f]{32}$/);
    assert.equal(new TicketKeyRing(secret).sessionIdContext('generation-1'), context);
    assert.notEqual(ring.sessionIdContext('generation-2'), context);
    assert.notEqual(new TicketKeyRing(Buffer.alloc(32, 8)).sessionIdContext('generation-1'), context);
  });
});

// --- Real handshakes -------------------------------------------------------

interface Worker {
  server: tls.Server;
  port: number;
}

/** A TLS server as a worker builds it: default context plus SNI contexts, all from loaded PEMs. */
async function startWorker(
  policy: TlsPolicy,
  certificates: LoadedCertificate[],
  sessionIdContext?: string,
  ticketKey?: Buffer,
): Promise<Worker> {
  const contextOptions = (certificate: LoadedCertificate): tls.SecureContextOptions => ({
    key: certificate.keyPem,
    cert: certificate.certPem + (certificate.chainPem ?? ''),
    ...policy,
    ...(sessionIdContext === undefined ? {} : { sessionIdContext }),
  });
  const table = new SniTable<tls.SecureContext>();
  for (const certificate of certificates) table.add(certificate.name, tls.createSecureContext(contextOptions(certificate)));
  const first = certificates[0];
  assert.ok(first);
  const server = tls.createServer({
    ...contextOptions(first),
    SNICallback: (serverName, callback) => callback(null, table.match(serverName) ?? undefined),
  });
  if (ticketKey !== undefined) server.setTicketKeys(ticketKey);
  server.on('secureConnection', (socket) => socket.end('ok'));
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

async function stopWorker(worker: Worker): Promise<void> {
  worker.server.close();
  await once(worker.server, 'close');
}

interface Handshake {
  reused: boolean;
  protocol: string | null;
  cipher: string;
  session: Buffer | undefined;
  peerFingerprint256: string;
}

/** Connects, reads the server's "ok" to the end (so TLS 1.3 tickets arrive), and reports. */
function handshake(port: number, options: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(file('ca.crt')), ...options });
    let session: Buffer | undefined;
    let result: Omit<Handshake, 'session'> | undefined;
    socket.on('session', (ticket: Buffer) => {
      session = ticket;
    });
    socket.on('secureConnect', () => {
      result = {
        reused: socket.isSessionReused(),
        protocol: socket.getProtocol(),
        cipher: socket.getCipher().name,
        peerFingerprint256: socket.getPeerCertificate().fingerprint256,
      };
    });
    socket.on('data', () => {});
    socket.on('error', reject);
    socket.on('close', () => {
      if (result === undefined) reject(new Error('closed before the handshake completed'));
      else resolve({ ...result, session });
    });
  });
}

describe('TLS handshakes with loaded certificates and the policy', () => {
  const policy = tlsPolicy('1.2', undefined);
  let site: LoadedCertificate;
  let wildcard: LoadedCertificate;
  let worker: Worker;

  before(async () => {
    site = loaded(files('site.example.test', 'site', 'site', 'ca'));
    wildcard = loaded(files('*.example.test', 'wildcard'));
    worker = await startWorker(policy, [site, wildcard]);
  });
  after(() => stopWorker(worker));

  it('serves TLS 1.2 with an AEAD suite', async () => {
    const result = await handshake(worker.port, { servername: 'site.example.test', maxVersion: 'TLSv1.2' });
    assert.equal(result.protocol, 'TLSv1.2');
    assert.ok(policy.ciphers.split(':').includes(result.cipher), result.cipher);
    assert.match(result.cipher, /GCM|CHACHA20/);
  });

  it('serves TLS 1.3 and picks the certificate by SNI', async () => {
    const exact = await handshake(worker.port, { servername: 'site.example.test' });
    assert.equal(exact.protocol, 'TLSv1.3');
    assert.equal(exact.peerFingerprint256, site.fingerprint256);
    // The client also verifies the name against the certificate it gets.
    assert.equal((await handshake(worker.port, { servername: 'other.example.test' })).peerFingerprint256, wildcard.fingerprint256);
    assert.equal((await handshake(worker.port, { servername: 'www.example.test' })).peerFingerprint256, wildcard.fingerprint256);
    // No SNI (an IP literal is never sent as SNI): the default, the first certificate configured.
    const noSni = await handshake(worker.port, { checkServerIdentity: () => undefined });
    assert.equal(noSni.peerFingerprint256, site.fingerprint256);
  });

  it('refuses TLS 1.1', async () => {
    const serverError = once(worker.server, 'tlsClientError');
    await assert.rejects(
      handshake(worker.port, {
        servername: 'site.example.test',
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT@SECLEVEL=0', // let the client offer TLS 1.1 at all, so the refusal is the server's
      }),
      (error: NodeJS.ErrnoException) => error.code === 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
    );
    const [error] = (await serverError) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'ERR_SSL_UNSUPPORTED_PROTOCOL');
  });

  it('refuses a TLS 1.2 client that offers only CBC suites', async () => {
    const serverError = once(worker.server, 'tlsClientError');
    await assert.rejects(
      handshake(worker.port, {
        servername: 'site.example.test',
        maxVersion: 'TLSv1.2',
        ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384',
      }),
    );
    const [error] = (await serverError) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'ERR_SSL_NO_SHARED_CIPHER');
  });
});

describe('session resumption across workers', () => {
  const policy = tlsPolicy('1.2', undefined);
  const ring = new TicketKeyRing();
  const sessionIdContext = ring.sessionIdContext('generation-1');
  let site: LoadedCertificate;
  let wildcard: LoadedCertificate;

  before(() => {
    site = loaded(files('site.example.test', 'site', 'site', 'ca'));
    wildcard = loaded(files('*.example.test', 'wildcard'));
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    for (const servername of ['site.example.test', 'other.example.test']) {
      it(`${version}, ${servername}: a session from worker A resumes on worker B only with the shared key and context`, async () => {
        const workerA = await startWorker(policy, [site, wildcard], sessionIdContext, ring.current());
        const workerB = await startWorker(policy, [site, wildcard], sessionIdContext, ring.current());
        const otherKey = await startWorker(policy, [site, wildcard], sessionIdContext, new TicketKeyRing().current());
        const otherContext = await startWorker(policy, [site, wildcard], ring.sessionIdContext('generation-2'), ring.current());
        try {
          const options = { servername, maxVersion: version };
          const first = await handshake(workerA.port, options);
          assert.equal(first.protocol, version);
          assert.equal(first.reused, false);
          assert.ok(first.session);
          const resumed = await handshake(workerB.port, { ...options, session: first.session });
          assert.equal(resumed.reused, true);
          assert.equal((await handshake(otherKey.port, { ...options, session: first.session })).reused, false);
          assert.equal((await handshake(otherContext.port, { ...options, session: first.session })).reused, false);
        } finally {
          await Promise.all([workerA, workerB, otherKey, otherContext].map(stopWorker));
        }
      });
    }
  }

  it('a rotation ends resumption of tickets made under the old key (one key only in Node)', async () => {
    const rotating = new TicketKeyRing();
    const worker = await startWorker(policy, [site], rotating.sessionIdContext('generation-1'), rotating.current());
    try {
      const options = { servername: 'site.example.test' };
      const first = await handshake(worker.port, options);
      assert.equal((await handshake(worker.port, { ...options, session: first.session })).reused, true);
      worker.server.setTicketKeys(rotating.rotate());
      assert.equal((await handshake(worker.port, { ...options, session: first.session })).reused, false);
    } finally {
      await stopWorker(worker);
    }
  });
});
