/**
 * ACME issuance against a real ACME server (pebble, test/fixtures/pebble.ts):
 * every challenge type really validated by pebble, against answers served
 * by a test ChallengeBoard (HTTP-01, TLS-ALPN-01), a DNS program (exec) and
 * the Cloudflare provider through the API stub, both of which end up in
 * pebble-challtestsrv, the DNS pebble asks.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setLogger } from 'acme-client';
import { ACCOUNTS_DIR } from '../../src/tls/issuance/account.js';
import { createAcmeIssuer, type AcmeIssuerOptions } from '../../src/tls/issuance/acme.js';
import { createCloudflareDns, createExecDns } from '../../src/tls/issuance/dns.js';
import { splitPemCertificates } from '../../src/tls/issuance/keys.js';
import type { IssuedCertificate } from '../../src/tls/issuance/types.js';
import { TestChallengeBoard } from '../support/challenge-board.js';
import { captureLog } from '../support/log-capture.js';
import { issuanceRejection } from '../support/issuance-errors.js';
import { startPebble, trustInProcess, type Pebble } from '../support/pebble.js';
import { freePort, isRunning, tempDir } from '../support/harness.js';
import { CloudflareApiStub } from '../support/cloudflare-api.js';

const CLOUDFLARE_TOKEN = 'cf-test-token-Zm9vYmFyYmF6cXV4';
const ZONE = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'example.com' };

let pebble: Pebble;
let board: TestChallengeBoard;
let cloudflare: CloudflareApiStub;
let untrust: () => void;
let issuingRoot: X509Certificate;
let work: string;
let certDir: string;
let httpPort: number;
let tlsPort: number;
const captured = captureLog();

function issuer(overrides: Partial<AcmeIssuerOptions> = {}) {
  return createAcmeIssuer({
    directoryUrl: pebble.directoryUrl,
    email: 'hostmaster@example.com',
    agreeTos: true,
    accountDir: certDir,
    board,
    log: captured.log,
    dnsPropagationDelayMs: 0,
    ...overrides,
  });
}

function cloudflareDns() {
  return createCloudflareDns({ apiToken: CLOUDFLARE_TOKEN, apiBaseUrl: cloudflare.baseUrl, log: captured.log });
}

/**
 * A DNS-01 program in lego's exec convention that records how it was called
 * (with its whole environment) and sets or clears the TXT record through
 * challtestsrv, whose URL it gets as its credentials. `failPresent` makes
 * `present` fail the way a real program would: a message on stderr, status 3.
 */
function dnsProgram(
  name: string,
  options: { failPresent?: boolean } = {},
): { command: string; calls: () => { action: string; fqdn: string; value: string; env: string[] }[] } {
  const command = path.join(work, name);
  const callLog = path.join(work, `${name}.calls`);
  writeFileSync(
    command,
    `#!${process.execPath}
'use strict';
const fs = require('node:fs');
const [action, fqdn, value] = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(callLog)}, JSON.stringify({ action, fqdn, value, env: Object.keys(process.env).sort() }) + '\\n');
if (action === 'present' && ${options.failPresent === true}) {
  process.stderr.write('zone is locked for maintenance\\nsecond line\\n');
  process.exit(3);
}
const body = action === 'present' ? { host: fqdn, value } : { host: fqdn };
fetch(process.env.MIWIDOTHTTP_DNS_CREDENTIALS + (action === 'present' ? '/set-txt' : '/clear-txt'), { method: 'POST', body: JSON.stringify(body) })
  .then((response) => process.exit(response.ok ? 0 : 1), (error) => { process.stderr.write(String(error) + '\\n'); process.exit(1); });
`,
  );
  chmodSync(command, 0o755);
  return {
    command,
    calls: () =>
      existsSync(callLog)
        ? readFileSync(callLog, 'utf8')
            .trim()
            .split('\n')
            .map((line) => JSON.parse(line) as { action: string; fqdn: string; value: string; env: string[] })
        : [],
  };
}

/** The leaf is ours, for the names, and chains up to the root pebble issued from. */
function assertIssued(issued: IssuedCertificate, names: string[], keyType: 'ec' | 'rsa' = 'ec'): X509Certificate {
  const leaf = new X509Certificate(issued.certPem);
  assert.deepEqual(leaf.subjectAltName?.split(', ').sort(), names.map((name) => `DNS:${name}`).sort());
  const key = createPrivateKey(issued.keyPem);
  assert.ok(leaf.checkPrivateKey(key), 'the leaf carries the key returned with it');
  assert.equal(key.asymmetricKeyType, keyType);
  if (keyType === 'ec') assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  else assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
  assert.ok(issued.chainPem, 'pebble sends an intermediate');
  const chain = splitPemCertificates(issued.chainPem).map((pem) => new X509Certificate(pem));
  let child = leaf;
  for (const parent of [...chain, issuingRoot]) {
    assert.ok(child.checkIssued(parent) && child.verify(parent.publicKey), `${child.subject} is signed by ${parent.subject}`);
    child = parent;
  }
  assert.equal(issued.notBefore.getTime(), leaf.validFromDate.getTime());
  assert.equal(issued.notAfter.getTime(), leaf.validToDate.getTime());
  return leaf;
}

describe('ACME issuance through pebble', () => {
  before(async () => {
    work = tempDir('miwidothttp-acme-');
    certDir = path.join(work, 'certs');
    httpPort = await freePort();
    tlsPort = await freePort();
    board = await TestChallengeBoard.listen(httpPort, tlsPort);
    pebble = await startPebble({ httpPort, tlsPort });
    untrust = trustInProcess(pebble.caPem);
    issuingRoot = new X509Certificate(await pebble.issuingRoot());
    cloudflare = await CloudflareApiStub.start({ token: CLOUDFLARE_TOKEN, zones: [ZONE], txtSink: pebble });
  });

  after(async () => {
    untrust?.();
    await cloudflare?.close();
    await board?.close();
    await pebble?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  // Every key authorization any test put on the board, for the last test to look for in the log.
  const keyAuthorizations = new Set<string>();
  beforeEach(() => {
    for (const event of board.events) if (event.op === 'setHttp01') keyAuthorizations.add(event.keyAuthorization);
    board.reset();
  });

  it('http-01: two names; answers published before the CA looks, removed and republished after', async () => {
    const names = ['example.com', 'www.example.com'];
    const issued = await issuer({ challenges: ['http-01'] }).issue(names);
    assertIssued(issued, names);
    assert.deepEqual(board.calls(), ['setHttp01', 'setHttp01', 'publish', 'clearHttp01', 'clearHttp01', 'publish']);
    const firstPublish = board.events.findIndex((event) => event.op === 'publish');
    const served = board.events.flatMap((event, index) => (event.op === 'served' ? [index] : []));
    assert.ok(served.length >= 2, 'pebble fetched both answers');
    assert.ok(
      served.every((index) => index > firstPublish),
      'nothing was fetched before publish() resolved',
    );
    assert.equal(board.http01.size, 0);
  });

  it('tls-alpn-01, with an RSA 2048 key: the challenge certificate is RFC 8737 shaped', async () => {
    const names = ['alpn.example.com'];
    const issued = await issuer({ challenges: ['tls-alpn-01'], keyType: 'rsa-2048' }).issue(names);
    assertIssued(issued, names, 'rsa');
    assert.deepEqual(board.calls(), ['setTlsAlpn01', 'publish', 'clearTlsAlpn01', 'publish']);
    assert.ok(board.events.some((event) => event.op === 'served' && event.kind === 'tls-alpn-01' && event.key === 'alpn.example.com'));
    const set = board.events.find((event) => event.op === 'setTlsAlpn01');
    assert.ok(set?.op === 'setTlsAlpn01');
    const challengeCert = new X509Certificate(set.certPem);
    assert.equal(challengeCert.subjectAltName, 'DNS:alpn.example.com');
    assert.ok(challengeCert.verify(challengeCert.publicKey), 'self-signed');
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: set.certPem, encoding: 'utf8' });
    assert.match(text, /1\.3\.6\.1\.5\.5\.7\.1\.31: critical/);
    assert.equal(board.tlsAlpn01.size, 0);
  });

  it('dns-01 through a lego-style exec program: PATH and the credentials only, cleanup with the same value', async () => {
    const program = dnsProgram('dns-exec');
    const dns = createExecDns({ command: program.command, credentials: pebble.challtestsrvUrl, log: captured.log });
    const names = ['exec.example.com'];
    assertIssued(await issuer({ challenges: ['dns-01'], dns }).issue(names), names);
    const calls = program.calls();
    assert.deepEqual(
      calls.map((call) => [call.action, call.fqdn]),
      [
        ['present', '_acme-challenge.exec.example.com.'],
        ['cleanup', '_acme-challenge.exec.example.com.'],
      ],
    );
    assert.equal(calls[0]?.value, calls[1]?.value);
    assert.match(calls[0]?.value ?? '', /^[A-Za-z0-9_-]{43}$/, 'base64url SHA-256 of the key authorization (RFC 8555 §8.4)');
    assert.deepEqual(calls[0]?.env, ['MIWIDOTHTTP_DNS_CREDENTIALS', 'PATH']);
    assert.deepEqual(board.calls(), [], 'dns-01 needs no board');
  });

  it('dns-01 through the Cloudflare API: zone found by walking up the name, record created, deleted after', async () => {
    cloudflare.requests.length = 0;
    const names = ['cf.example.com'];
    assertIssued(await issuer({ challenges: ['dns-01'], dns: cloudflareDns() }).issue(names), names);
    const created = (cloudflare.requests[2]?.response as { result?: { id?: string } } | undefined)?.result?.id;
    assert.match(created ?? '', /^[0-9a-f]{32}$/);
    assert.deepEqual(
      cloudflare.requests.map(
        (request) => `${request.status} ${request.method} ${request.path}${request.query.name ? `?name=${request.query.name}` : ''}`,
      ),
      [
        '200 GET /zones?name=cf.example.com',
        '200 GET /zones?name=example.com',
        `200 POST /zones/${ZONE.id}/dns_records`,
        `200 DELETE /zones/${ZONE.id}/dns_records/${created}`,
      ],
    );
    const { content, ...rest } = cloudflare.requests[2]!.body as { content: string };
    assert.deepEqual(rest, { type: 'TXT', name: '_acme-challenge.cf.example.com', ttl: 120 });
    assert.match(content, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(cloudflare.requests.every((request) => request.authorization === `Bearer ${CLOUDFLARE_TOKEN}`));
    assert.equal(cloudflare.records.size, 0);
  });

  it('a wildcard and its base name by dns-01: two TXT values at one name, both validated', async () => {
    const names = ['*.wild.example.com', 'wild.example.com'];
    assertIssued(await issuer({ challenges: ['dns-01'], dns: cloudflareDns() }).issue(names), names);
    assert.equal(cloudflare.records.size, 0);
  });

  it('mixed: the base name by http-01 (preferred), the wildcard by dns-01 (its only way)', async () => {
    const names = ['mixed.example.com', '*.mixed.example.com'];
    cloudflare.requests.length = 0;
    assertIssued(await issuer({ challenges: ['http-01', 'dns-01'], dns: cloudflareDns() }).issue(names), names);
    assert.deepEqual(board.calls(), ['setHttp01', 'publish', 'clearHttp01', 'publish']);
    assert.equal(cloudflare.requests.filter((request) => request.method === 'POST').length, 1);
  });

  it('a wildcard without dns-01 is refused before any order', async () => {
    const error = await issuanceRejection(issuer({ challenges: ['http-01'] }).issue(['*.example.com']));
    assert.match(error.message, /^\*\.example\.com: .*dns-01/);
    assert.deepEqual(board.calls(), []);
  });

  it('the account is kept: key 0600 in a 0700 folder, reused by the next issuer; another directory URL is another account', async () => {
    const dir = path.join(work, 'account-test');
    const requests: string[] = [];
    setLogger((message) => requests.push(message));
    try {
      const directory = (await (await fetch(pebble.directoryUrl)).json()) as { newAccount: string };
      const newAccountRequests = () => requests.filter((line) => line === `HTTP request: post ${directory.newAccount}`).length;

      await issuer({ accountDir: dir, challenges: ['http-01'] }).issue(['account.example.com']);
      assert.equal(newAccountRequests(), 1, 'the first issuer made the account');
      const [folder, ...others] = readdirSync(path.join(dir, ACCOUNTS_DIR));
      assert.ok(folder !== undefined && others.length === 0);
      assert.match(folder, /^127\.0\.0\.1_\d+-[0-9a-f]{12}$/);
      const accountPath = path.join(dir, ACCOUNTS_DIR, folder);
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.equal(statSync(path.join(dir, ACCOUNTS_DIR)).mode & 0o777, 0o700);
      assert.equal(statSync(accountPath).mode & 0o777, 0o700);
      assert.equal(statSync(path.join(accountPath, 'account.key')).mode & 0o777, 0o600);
      assert.equal(statSync(path.join(accountPath, 'account.json')).mode & 0o777, 0o600);
      const account = JSON.parse(readFileSync(path.join(accountPath, 'account.json'), 'utf8')) as {
        directoryUrl: string;
        accountUrl: string;
      };
      assert.equal(account.directoryUrl, pebble.directoryUrl);
      assert.match(account.accountUrl, /^https:\/\/127\.0\.0\.1:\d+\//);
      const keyBefore = readFileSync(path.join(accountPath, 'account.key'), 'utf8');

      // A new issuer (a restart of the master), without agree_tos: the kept account needs none.
      await issuer({ accountDir: dir, agreeTos: false, challenges: ['http-01'] }).issue(['account.example.com']);
      assert.equal(newAccountRequests(), 1, 'no second account');
      assert.equal(readFileSync(path.join(accountPath, 'account.key'), 'utf8'), keyBefore);

      // The key kept but not the CA's answer (a crash in between): the CA finds the account by its key.
      rmSync(path.join(accountPath, 'account.json'));
      await issuer({ accountDir: dir, challenges: ['http-01'] }).issue(['account.example.com']);
      assert.equal(newAccountRequests(), 2, 'asked again with the same key');
      assert.equal(
        JSON.parse(readFileSync(path.join(accountPath, 'account.json'), 'utf8')).accountUrl,
        account.accountUrl,
        'the same account',
      );
      assert.equal(readFileSync(path.join(accountPath, 'account.key'), 'utf8'), keyBefore);

      await issuer({ accountDir: dir, directoryUrl: pebble.directoryUrlByName, challenges: ['http-01'] }).issue(['account.example.com']);
      assert.equal(newAccountRequests(), 2, 'the other URL is counted by its own name');
      assert.equal(readdirSync(path.join(dir, ACCOUNTS_DIR)).length, 2);
      const second = readdirSync(path.join(dir, ACCOUNTS_DIR)).find((name) => name.startsWith('localhost_'));
      assert.ok(second);
      assert.notEqual(readFileSync(path.join(dir, ACCOUNTS_DIR, second, 'account.key'), 'utf8'), keyBefore);
    } finally {
      setLogger(() => undefined);
    }
  });

  it('a kept account key that others can read is refused, not used', async () => {
    const dir = path.join(work, 'account-test');
    const folder = readdirSync(path.join(dir, ACCOUNTS_DIR))[0] as string;
    const keyFile = path.join(dir, ACCOUNTS_DIR, folder, 'account.key');
    chmodSync(keyFile, 0o644);
    try {
      const error = await issuanceRejection(issuer({ accountDir: dir, challenges: ['http-01'] }).issue(['account.example.com']));
      assert.match(error.message, /readable by group or others/);
    } finally {
      chmodSync(keyFile, 0o600);
    }
  });

  it('no account is created without agree_tos, and nothing is written', async () => {
    const dir = path.join(work, 'no-tos');
    const error = await issuanceRejection(issuer({ accountDir: dir, agreeTos: false, challenges: ['http-01'] }).issue(['tos.example.com']));
    assert.match(error.message, /agree_tos/);
    assert.equal(existsSync(dir), false);
    assert.deepEqual(board.calls(), []);
  });

  it('a wrong key authorization fails naming the name and http-01, and the answer is removed', async () => {
    board.behaviour = 'wrong-key-authorization';
    const error = await issuanceRejection(issuer({ challenges: ['http-01'] }).issue(['wrong.example.com']));
    assert.match(error.message, /^wrong\.example\.com: http-01 challenge invalid: unauthorized: /);
    assert.deepEqual(board.calls(), ['setHttp01', 'publish', 'clearHttp01', 'publish']);
    assert.equal(board.http01.size, 0);
  });

  it('nothing served (404) fails naming the name and http-01, and the answer is removed', async () => {
    board.behaviour = 'not-found';
    const error = await issuanceRejection(issuer({ challenges: ['http-01'] }).issue(['absent.example.com']));
    assert.match(error.message, /^absent\.example\.com: http-01 challenge invalid: /);
    assert.match(error.message, /404/);
    assert.deepEqual(board.calls(), ['setHttp01', 'publish', 'clearHttp01', 'publish']);
  });

  it('a TLS-ALPN-01 answer that is not served fails naming tls-alpn-01, and is removed', async () => {
    board.behaviour = 'not-found';
    const error = await issuanceRejection(issuer({ challenges: ['tls-alpn-01'] }).issue(['noalpn.example.com']));
    assert.match(error.message, /^noalpn\.example\.com: tls-alpn-01 challenge invalid: /);
    assert.deepEqual(board.calls(), ['setTlsAlpn01', 'publish', 'clearTlsAlpn01', 'publish']);
  });

  it('a DNS program that fails: its first stderr line in the error, and cleanup still runs', async () => {
    const program = dnsProgram('dns-exec-failing', { failPresent: true });
    const dns = createExecDns({ command: program.command, log: captured.log });
    const error = await issuanceRejection(issuer({ challenges: ['dns-01'], dns }).issue(['locked.example.com']));
    assert.match(
      error.message,
      /^locked\.example\.com: dns-01 via exec: exec: .* present _acme-challenge\.locked\.example\.com: exited with status 3: zone is locked for maintenance$/,
    );
    assert.deepEqual(
      program.calls().map((call) => call.action),
      ['present', 'cleanup'],
    );
  });

  it('a validation that never completes times out, and the answer is removed', async () => {
    board.behaviour = 'hang';
    const started = Date.now();
    const error = await issuanceRejection(issuer({ challenges: ['http-01'], validationTimeoutMs: 1_500 }).issue(['slow.example.com']));
    assert.match(error.message, /^slow\.example\.com \(http-01\): the CA did not validate within 2s$/);
    assert.ok(Date.now() - started < 10_000);
    assert.deepEqual(board.calls(), ['setHttp01', 'publish', 'clearHttp01', 'publish']);
    assert.ok(
      captured.entries('pending ACME authorization deactivated').some((entry) => entry.name === 'slow.example.com'),
      'the authorization left pending was deactivated (RFC 8555 §7.5.2)',
    );
  });

  it('workers that do not acknowledge the answers: the CA is not told to look, and the answer is removed', async () => {
    const refused = Promise.reject(new Error('worker 2 did not acknowledge challenge set 7 within 5s'));
    refused.catch(() => undefined);
    board.publishGate = refused;
    const error = await issuanceRejection(issuer({ challenges: ['http-01'] }).issue(['unacked.example.com']));
    assert.equal(
      error.message,
      'unacked.example.com: waiting for the workers to serve the challenge answers: worker 2 did not acknowledge challenge set 7 within 5s',
    );
    assert.deepEqual(board.calls(), ['setHttp01', 'clearHttp01']);
    assert.ok(!board.events.some((event) => event.op === 'served'));
    assert.ok(captured.entries('could not publish the removal of ACME challenge answers').length > 0, 'the failed removal is logged');
  });

  it('an abort while the workers have not acknowledged stops the issue, and the answer is removed', async () => {
    let release: () => void = () => undefined;
    board.publishGate = new Promise<void>((resolve) => (release = resolve));
    const controller = new AbortController();
    const pending = issuer({ challenges: ['http-01'] }).issue(['aborted.example.com'], controller.signal);
    setTimeout(() => controller.abort(new Error('shutting down')), 300);
    // The removal is published too: let the "workers" acknowledge it once the abort is in.
    setTimeout(() => release(), 600);
    const error = await issuanceRejection(pending);
    assert.match(error.message, /^aborted\.example\.com: aborted while waiting for the workers to serve the challenge answers$/);
    // Both publish() calls (the aborted one and the removal's) end when the gate opens.
    assert.deepEqual(board.calls(), ['setHttp01', 'clearHttp01', 'publish', 'publish']);
    assert.ok(!board.events.some((event) => event.op === 'served'), 'the CA was never told to look');
    assert.equal(board.http01.size, 0);
  });

  it('short-lived certificates: the validity the CA chose is what notBefore/notAfter say; the fixture leaves no process', async () => {
    const shortLived = await startPebble({ httpPort, tlsPort, certificateValiditySeconds: 3_600 });
    const untrustShort = trustInProcess(shortLived.caPem);
    try {
      const issued = await issuer({ directoryUrl: shortLived.directoryUrl, challenges: ['http-01'] }).issue(['short.example.com']);
      const lifetimeSeconds = (issued.notAfter.getTime() - issued.notBefore.getTime()) / 1000;
      assert.ok(lifetimeSeconds >= 3_590 && lifetimeSeconds <= 3_610, `lifetime ${lifetimeSeconds}s`);
      assert.ok(Math.abs(issued.notBefore.getTime() - Date.now()) < 120_000);
    } finally {
      untrustShort();
      await shortLived.stop();
    }
    assert.equal(shortLived.pids.length, 2);
    for (const pid of shortLived.pids) assert.equal(isRunning(pid), false, `process ${pid} is gone after stop()`);
  });

  it('no key, key authorization or token reached the log', () => {
    const text = captured.text();
    assert.ok(text.length > 0);
    assert.ok(keyAuthorizations.size >= 5);
    for (const keyAuthorization of keyAuthorizations) assert.ok(!text.includes(keyAuthorization));
    assert.doesNotMatch(text, /PRIVATE KEY/);
    assert.ok(!text.includes(CLOUDFLARE_TOKEN));
    assert.ok(captured.entries('certificate issued').length >= 7);
  });
});
