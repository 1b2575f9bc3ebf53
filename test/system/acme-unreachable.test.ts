/**
 * Issue 14: an ACME server that cannot be reached is said in one line,
 * naming the CA URL and the cause, at once, not after acme-client's 75 s of
 * retries ending in "Cannot read properties of undefined". The server keeps
 * serving meanwhile. The challenge ports are left unset: they default to
 * the server's own (a config that only states the defaults is valid).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, freePort, request, TestServer, waitFor } from '../support/harness.js';

describe('issue 14: an unreachable ACME server', () => {
  const server = new TestServer();
  let directoryUrl = '';

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'up\n');
    // A port nothing listens on: connections are refused.
    directoryUrl = `https://127.0.0.1:${await freePort()}/directory`;
    const httpsPort = await freePort();
    await server.start(
      `[ssl]
provider = "acme"
acme_server = "${directoryUrl}"
agree_tos = true
cert_dir = "${server.dir}/certs"
domains = ["unreachable.test"]

[[vhosts]]
domains = ["*"]
root = "${server.dir}"`,
      `https_port = ${httpsPort}\nworkers = 1\n`,
    );
  });
  after(() => server.stop());

  it('fails the order in one line naming the CA URL and the cause, well within the order timeout', async () => {
    // acme-client alone takes 75 s to fail; 40 s is generous for one refused connection.
    const line = await waitFor(
      'the failed order in the log',
      () => server.logLines().find((entry) => entry.domain === 'unreachable.test' && String(entry.msg).includes('order failed')),
      40_000,
    );
    const message = String(line.msg);
    assert.ok(message.includes(directoryUrl), message);
    assert.match(message, /ECONNREFUSED/);
    assert.doesNotMatch(server.output, /Cannot read properties/);
    const shown = cli(['certs', '-c', server.configFile, '--json']);
    const views = (JSON.parse(shown.stdout) as { certificates: { name: string; lastError: string | null }[] }).certificates;
    const view = views.find((entry) => entry.name === 'unreachable.test');
    assert.match(view?.lastError ?? '', /cannot reach the ACME server at https:\/\/127\.0\.0\.1:\d+\/directory: ECONNREFUSED/);
    assert.doesNotMatch(view?.lastError ?? '', /\n/);
  });

  it('keeps serving plain HTTP meanwhile', async () => {
    assert.equal((await request(server.port, { path: '/', headers: { Host: 'any.test' } })).status, 200);
  });
});
