/**
 * The DNS-01 providers on their own: the Cloudflare one against the API
 * stub (zones, records, cleanup after a restart, errors), the exec one
 * against small programs (its environment, its failures, and a timeout that
 * kills everything the program started). The ACME tests run both against
 * pebble; these are the cases pebble cannot produce.
 */
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createCloudflareDns, createExecDns, type CloudflareDnsOptions } from '../../src/tls/issuance/dns.js';
import { IssuanceError } from '../../src/tls/issuance/types.js';
import { captureLog } from '../support/log-capture.js';
import { issuanceRejection } from '../support/issuance-errors.js';
import { isRunning, tempDir, waitFor } from '../support/harness.js';
import { CloudflareApiStub } from '../support/cloudflare-api.js';

const TOKEN = 'dns-edit-token-aGVsbG8td29ybGQ';
const ZONE = { id: '372e67954025e0ba6aaa6d586b9e0b59', name: 'example.com' };
const captured = captureLog();

let work: string;
let stub: CloudflareApiStub;

function cloudflare(overrides: Partial<CloudflareDnsOptions> = {}) {
  return createCloudflareDns({ apiToken: TOKEN, apiBaseUrl: stub.baseUrl, log: captured.log, ...overrides });
}

async function rejection(promise: Promise<unknown>): Promise<IssuanceError> {
  const error = await issuanceRejection(promise);
  assert.ok(!error.message.includes(TOKEN));
  return error;
}

/** A program at an absolute path, run by this test's node. */
function program(name: string, body: string): string {
  const file = path.join(work, name);
  writeFileSync(file, `#!${process.execPath}\n'use strict';\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('DNS-01 providers', () => {
  before(async () => {
    work = tempDir('miwidothttp-dns-');
    stub = await CloudflareApiStub.start({ token: TOKEN, zones: [ZONE] });
  });

  after(async () => {
    await stub?.close();
    rmSync(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    stub.requests.length = 0;
  });

  describe('cloudflare', () => {
    it('with zone_id: no zone lookup; the record is created and deleted by its id', async () => {
      const dns = cloudflare({ zoneId: ZONE.id, ttlSeconds: 60 });
      await dns.present('_acme-challenge.a.example.com', 'value-1');
      assert.equal(stub.records.size, 1);
      const [record] = stub.records.values();
      assert.equal(record?.ttl, 60);
      await dns.cleanup('_acme-challenge.a.example.com', 'value-1');
      assert.equal(stub.records.size, 0);
      assert.deepEqual(
        stub.requests.map((request) => `${request.status} ${request.method} ${request.path}`),
        [`200 POST /zones/${ZONE.id}/dns_records`, `200 DELETE /zones/${ZONE.id}/dns_records/${record?.id}`],
      );
    });

    it('two values at one name (a wildcard and its base): each cleanup deletes its own record', async () => {
      const dns = cloudflare();
      await dns.present('_acme-challenge.b.example.com', 'for-the-base');
      await dns.present('_acme-challenge.b.example.com', 'for-the-wildcard');
      assert.equal(stub.records.size, 2);
      await dns.cleanup('_acme-challenge.b.example.com', 'for-the-wildcard');
      assert.deepEqual(
        [...stub.records.values()].map((record) => record.content),
        ['for-the-base'],
      );
      await dns.cleanup('_acme-challenge.b.example.com', 'for-the-base');
      assert.equal(stub.records.size, 0);
      assert.equal(
        stub.requests.filter((request) => request.path === '/zones').length,
        2,
        'the zone is looked up once (b.example.com, then example.com), then remembered',
      );
    });

    it('cleanup by another instance (a restart in between) finds the record by name and content', async () => {
      await cloudflare().present('_acme-challenge.c.example.com', 'left-behind');
      const [record] = stub.records.values();
      stub.requests.length = 0;
      await cloudflare().cleanup('_acme-challenge.c.example.com', 'left-behind');
      assert.equal(stub.records.size, 0);
      assert.deepEqual(stub.requests.map((request) => `${request.method} ${request.path}`).slice(-2), [
        `GET /zones/${ZONE.id}/dns_records`,
        `DELETE /zones/${ZONE.id}/dns_records/${record?.id}`,
      ]);
      assert.deepEqual(stub.requests.at(-2)?.query, { type: 'TXT', name: '_acme-challenge.c.example.com' });
    });

    it('cleanup of a record that is not there is no error, and deletes nothing', async () => {
      await cloudflare().cleanup('_acme-challenge.d.example.com', 'never-made');
      assert.ok(stub.requests.every((request) => request.method === 'GET'));
    });

    it('a name in no zone of the account: one line saying which zones were tried', async () => {
      const error = await rejection(cloudflare().present('_acme-challenge.www.example.org', 'v'));
      assert.equal(
        error.message,
        'cloudflare: no zone for _acme-challenge.www.example.org that this token can see (tried www.example.org, example.org)',
      );
    });

    it("the API's errors: code and message, the token never", async () => {
      const wrongToken = await rejection(cloudflare({ apiToken: 'wrong-token' }).present('_acme-challenge.e.example.com', 'v'));
      assert.equal(wrongToken.message, 'cloudflare: looking up zone e.example.com: HTTP 403: error 10000: Authentication error');

      stub.failNext('POST /zones/:zone/dns_records', 400, [{ code: 81058, message: 'An identical record already exists.' }]);
      const duplicate = await rejection(cloudflare({ zoneId: ZONE.id }).present('_acme-challenge.e.example.com', 'v'));
      assert.equal(
        duplicate.message,
        'cloudflare: creating TXT _acme-challenge.e.example.com: HTTP 400: error 81058: An identical record already exists.',
      );

      const unknownZone = await rejection(
        cloudflare({ zoneId: 'ffffffffffffffffffffffffffffffff' }).present('_acme-challenge.e.example.com', 'v'),
      );
      assert.match(
        unknownZone.message,
        /^cloudflare: creating TXT _acme-challenge\.e\.example\.com: HTTP 400: error 7003: Could not route to /,
      );

      const dns = cloudflare({ zoneId: ZONE.id });
      await dns.present('_acme-challenge.f.example.com', 'v');
      stub.failNext('DELETE /zones/:zone/dns_records/:id', 500, [{ code: 10001, message: 'Internal error' }]);
      const cleanup = await rejection(dns.cleanup('_acme-challenge.f.example.com', 'v'));
      assert.equal(cleanup.message, 'cloudflare: deleting TXT _acme-challenge.f.example.com: HTTP 500: error 10001: Internal error');
      await dns.cleanup('_acme-challenge.f.example.com', 'v');
      assert.equal(stub.records.size, 0, 'a failed cleanup can be run again');
      assert.ok(!captured.text().includes(TOKEN));
    });

    it('a TTL Cloudflare does not take is refused when the provider is made', () => {
      assert.throws(
        () => cloudflare({ ttlSeconds: 30 }),
        (error: unknown) => error instanceof IssuanceError && /TTL 30/.test(error.message),
      );
    });
  });

  describe('exec', () => {
    it('present and cleanup, lego-style: action, the FQDN with its dot, the value; PATH and the credentials only', async () => {
      const calls = path.join(work, 'calls.json');
      const command = program(
        'record',
        `require('node:fs').appendFileSync(${JSON.stringify(calls)}, JSON.stringify({ argv: process.argv.slice(2), env: process.env, cwd: process.cwd() }) + '\\n');`,
      );
      process.env.MIWIDOTHTTP_SHOULD_NOT_LEAK = 'master-environment';
      try {
        const dns = createExecDns({ command, credentials: 'api-key-123', log: captured.log });
        await dns.present('_acme-challenge.example.com', 'txt-value');
        await dns.cleanup('_acme-challenge.example.com', 'txt-value');
      } finally {
        delete process.env.MIWIDOTHTTP_SHOULD_NOT_LEAK;
      }
      const seen = readFileSync(calls, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { argv: string[]; env: Record<string, string>; cwd: string });
      assert.deepEqual(
        seen.map((call) => call.argv),
        [
          ['present', '_acme-challenge.example.com.', 'txt-value'],
          ['cleanup', '_acme-challenge.example.com.', 'txt-value'],
        ],
      );
      assert.deepEqual(seen[0]?.env, {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        MIWIDOTHTTP_DNS_CREDENTIALS: 'api-key-123',
      });
      assert.equal(seen[0]?.cwd, '/');
    });

    it('a failure: the status and the first stderr line, with the credentials scrubbed', async () => {
      const command = program('fail', `process.stderr.write('\\n  auth failed for key api-key-123\\nstack...\\n'); process.exit(7);`);
      const error = await rejection(
        createExecDns({ command, credentials: 'api-key-123', log: captured.log }).present('_acme-challenge.example.com', 'v'),
      );
      assert.equal(
        error.message,
        `exec: ${command} present _acme-challenge.example.com: exited with status 7: auth failed for key [credentials]`,
      );
    });

    it('a program that hangs is killed at the timeout, with everything it started', async () => {
      const pids = path.join(work, 'pids');
      const command = program(
        'hang',
        `const child = require('node:child_process').spawn('sleep', ['600'], { stdio: 'ignore' });
require('node:fs').writeFileSync(${JSON.stringify(pids)}, JSON.stringify([process.pid, child.pid]));
setInterval(() => undefined, 1000);`,
      );
      const started = Date.now();
      const error = await rejection(
        createExecDns({ command, timeoutMs: 1_000, log: captured.log }).present('_acme-challenge.example.com', 'v'),
      );
      assert.equal(error.message, `exec: ${command} present _acme-challenge.example.com: did not finish within 1s (killed)`);
      assert.ok(Date.now() - started < 5_000);
      const [parent, child] = JSON.parse(readFileSync(pids, 'utf8')) as [number, number];
      await waitFor('the program and its child to be gone', () => !isRunning(parent) && !isRunning(child), 5_000);
    });

    it('an abort kills the program', async () => {
      const command = program('slow', `setTimeout(() => process.exit(0), 60_000);`);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 200);
      const error = await rejection(
        createExecDns({ command, log: captured.log }).present('_acme-challenge.example.com', 'v', controller.signal),
      );
      assert.match(error.message, /: aborted \(killed\)$/);
    });

    it('a program that is not there, and one given by a relative path', async () => {
      const missing = await rejection(
        createExecDns({ command: path.join(work, 'missing'), log: captured.log }).present('_acme-challenge.example.com', 'v'),
      );
      assert.match(missing.message, /: cannot run it: ENOENT$/);
      assert.throws(
        () => createExecDns({ command: 'dns-hook.sh', log: captured.log }),
        (error: unknown) => error instanceof IssuanceError && /not an absolute path/.test(error.message),
      );
    });
  });
});
