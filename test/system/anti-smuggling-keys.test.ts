/**
 * Issue 14, keys that did nothing: every [security.anti_smuggling] switch
 * is either done or, where turning it off would weaken a defence, refused
 * by `check` (and so by start and reload) with one line saying why.
 * force_connection_close = true closes every connection after one request,
 * HTTP/1 and HTTP/2; normalize_headers refuses a field that may appear once
 * sent twice; reject_invalid_characters refuses what a browser would have
 * percent-encoded.
 */
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, freePort, rawRequest, TestServer, tempDir, waitFor } from '../support/harness.js';
import { h2Connect, h2Request } from '../support/h2-client.js';
import { siteCertificate } from '../support/test-ca.js';

const SWITCHES = [
  'strict_http_parsing',
  'reject_invalid_headers',
  'normalize_headers',
  'reject_ambiguous_requests',
  'prefer_transfer_encoding',
  'validate_content_length',
  'reject_invalid_characters',
];

const statuses = (answer: string): number[] => [...answer.matchAll(/(?:^|\n)HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));

describe('issue 14: [security.anti_smuggling] switches are done or refused', () => {
  it('check refuses turning off any defence, one line per key saying why', () => {
    const dir = tempDir();
    const file = path.join(dir, 'off.toml');
    writeFileSync(
      file,
      `[security.anti_smuggling]\n${SWITCHES.map((key) => `${key} = false`).join('\n')}\n[[vhosts]]\ndomains = ["*"]\nroot = "${dir}"\n`,
    );
    const result = cli(['check', '-c', file]);
    assert.equal(result.status, 1);
    const lines = result.stderr.trim().split('\n');
    for (const key of SWITCHES) {
      const line = lines.find((candidate) => candidate.includes(`security.anti_smuggling.${key}: `));
      assert.ok(line, `no line for ${key}:\n${result.stderr}`);
      assert.match(line, /cannot be turned off: .{20,}/);
    }
  });

  it('check accepts every switch on, and force_connection_close either way', () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const file = path.join(dir, 'on.toml');
    writeFileSync(
      file,
      `[security.anti_smuggling]\n${SWITCHES.map((key) => `${key} = true`).join('\n')}\nforce_connection_close = true\n[process.isolation]\nchroot = "${dir}"\n[[vhosts]]\ndomains = ["*"]\nroot = "${dir}"\n`,
    );
    const result = cli(['check', '-c', file]);
    assert.equal(result.status, 0, result.stderr);
  });
});

describe('issue 14: anti-smuggling on the wire', () => {
  const server = new TestServer();
  let httpsPort = 0;

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    const tlsSite = siteCertificate(server.dir);
    httpsPort = await freePort();
    await server.start(
      `${tlsSite}
[security.anti_smuggling]
force_connection_close = true

[[vhosts]]
domains = ["site.test"]
root = "${server.dir}"`,
      `https_port = ${httpsPort}\nworkers = 1\n`,
    );
  });
  after(() => server.stop());

  const get = (target: string, extra = '') => `GET ${target} HTTP/1.1\r\nHost: site.test\r\n${extra}\r\n`;

  it('force_connection_close: one request per HTTP/1 connection, its answer says Connection: close', async () => {
    const answer = await rawRequest(server.port, get('/') + get('/'));
    assert.deepEqual(statuses(answer), [200]);
    assert.match(answer, /\r\nConnection: close\r\n/i);
  });

  it('force_connection_close: HTTP/2 sends GOAWAY after the first stream', async () => {
    const session = await h2Connect(httpsPort, 'site.test');
    const goaway = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no GOAWAY within 8 s')), 8000);
      session.once('goaway', () => resolve(clearTimeout(timer)));
    });
    const first = await h2Request(session, { ':path': '/', ':authority': 'site.test' });
    assert.equal(first.status, 200);
    await goaway;
    session.destroy();
  });

  it('normalize_headers: a field that may appear once, sent twice, is refused (Node kept the first silently)', async () => {
    for (const twice of ['Content-Type: a/b\r\nContent-Type: c/d\r\n', 'Authorization: Basic YTpi\r\nAuthorization: Basic Yzpk\r\n']) {
      const answer = await rawRequest(server.port, get('/', twice));
      assert.match(answer, /^HTTP\/1\.1 400 /, twice);
    }
    await waitFor('audit', () => server.logLines().some((line) => line.audit === 'request.duplicate_header'));
    // Lists may repeat: they are one field (RFC 9110 §5.3).
    assert.match(await rawRequest(server.port, get('/', 'Accept: text/html\r\nAccept: */*\r\n')), /^HTTP\/1\.1 200 /);
  });

  it('reject_invalid_characters: what a browser percent-encodes is refused; what browsers send raw passes', async () => {
    for (const target of ['/a"b', '/a<b>', '/a\\b', '/a`b', '/a{b}', '/?q=<script>', '/?q="x"']) {
      const answer = await rawRequest(server.port, get(target));
      assert.match(answer, /^HTTP\/1\.1 400 /, target);
    }
    await waitFor('audit', () => server.logLines().some((line) => line.audit === 'request.bad_target'));
    for (const target of ['/?path=C:\\x', '/?a=b|c', '/?q={x}', '/?q=a^b']) {
      const answer = await rawRequest(server.port, get(target));
      assert.match(answer, /^HTTP\/1\.1 200 /, target);
    }
  });
});
