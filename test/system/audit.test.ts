/**
 * The audit log ([security.audit]) through the real server: JSON lines
 * written by the master alone, security events from workers with client IP,
 * worker and generation, configuration changes and admin actions, chosen
 * headers kept and credentials never written, SIGUSR1 reopening, and an
 * unwritable file that is reported and does not stop serving.
 */
import assert from 'node:assert/strict';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, rawRequest, readText, request, TestServer, waitFor } from '../support/harness.js';

const SECRET = 's3cret-value';
const REJECTED = `GET /private?token=${SECRET} HTTP/1.1\r\nHost: audit.test\r\nHost: audit.test\r\nUser-Agent: audit-probe\r\nAuthorization: Bearer ${SECRET}\r\nCookie: sid=${SECRET}\r\nX-Trace: ${SECRET}\r\n\r\n`;

/** utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15). */
function cpuTicks(pid: number): number {
  const stat = readText(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function auditLines(file: string): Record<string, unknown>[] {
  return readText(file)
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('audit log', () => {
  const server = new TestServer();
  const file = path.join(server.dir, 'audit', 'audit.log');
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    await server.start(`[security.audit]
log_file = "${file}"
include_headers = ["User-Agent", "Authorization", "Cookie", "X-Trace"]
exclude_headers = ["X-Trace"]

[[vhosts]]
domains = ["audit.test"]
root = "${server.dir}"
`);
  });
  after(() => server.stop());

  it("writes a worker's rejection as one JSON line with who, where and why", async () => {
    const answer = await rawRequest(server.port, REJECTED);
    assert.match(answer, /^HTTP\/1\.1 400 /);
    const line = await waitFor('audit line', () => auditLines(file).find((entry) => entry.audit === 'request.duplicate_host'));
    assert.equal(line.category, 'security');
    assert.equal(line.status, 400);
    assert.equal(line.clientIp, '127.0.0.1');
    assert.equal(line.role, 'worker');
    assert.equal(typeof line.pid, 'number');
    assert.equal(line.generation, 1);
    assert.equal(line.path, '/private');
    assert.equal(typeof line.time, 'string');
    assert.deepEqual(line.headers, { 'user-agent': 'audit-probe' });
  });

  it('never writes a credential, an excluded header or a query string', () => {
    assert.ok(!readText(file).includes(SECRET), 'a secret reached the audit log');
    assert.ok(!server.output.includes(SECRET), 'a secret reached the main log');
  });

  it('records reloads (configuration) and who asked (admin)', async () => {
    assert.equal(cli(['reload', '-c', server.configFile]).status, 0);
    const reload = await waitFor('config.reload', () => auditLines(file).find((entry) => entry.audit === 'config.reload'));
    assert.equal(reload.category, 'configuration');
    assert.equal(reload.role, 'master');
    const admin = await waitFor('admin.reload', () => auditLines(file).find((entry) => entry.audit === 'admin.reload'));
    assert.equal(admin.via, 'control socket');
  });

  it('keeps audit events out of the main log when it has its own file', () => {
    assert.equal(server.logLines().filter((line) => line.audit !== undefined).length, 0);
  });

  it('reopens the file on SIGUSR1 (rotation)', async () => {
    renameSync(file, `${file}.1`);
    process.kill(server.masterPid(), 'SIGUSR1');
    await waitFor('reopened', () => server.logLines().some((line) => line.msg === 'log files reopened'));
    await rawRequest(server.port, REJECTED);
    await waitFor('event in the new file', () => auditLines(file).find((entry) => entry.audit === 'request.duplicate_host'));
    assert.equal(auditLines(`${file}.1`).filter((entry) => entry.audit === 'request.duplicate_host').length, 1);
  });
});

describe('audit log problems', () => {
  it('an audit file that cannot be made is refused at start, in one line', async () => {
    const server = new TestServer();
    try {
      // Under /proc no directory can be made (and Node's recursive mkdir never returns there): check and start say so.
      await assert.rejects(
        server.start(
          `[security.audit]\nlog_file = "/proc/miwidothttp-no-such-dir/audit.log"\n[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`,
        ),
        /security\.audit\.log_file: \/proc lies on \/proc/,
      );
    } finally {
      await server.stop();
    }
  });

  it('an audit file that cannot be reopened is reported and serving goes on', async () => {
    const server = new TestServer();
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    const logs = path.join(server.dir, 'audit');
    try {
      await server.start(`[security.audit]\nlog_file = "${logs}/audit.log"\n[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`);
      // Rotated away, and its directory replaced by a file: the reopen cannot make it again.
      rmSync(logs, { recursive: true });
      writeFileSync(logs, 'not a directory\n');
      process.kill(server.masterPid(), 'SIGUSR1');
      await waitFor('failure reported', () =>
        server.logLines().find((line) => line.msg === 'audit log not reopened; still writing to the one it had'),
      );
      await rawRequest(server.port, REJECTED);
      assert.equal((await request(server.port, { path: '/' })).status, 200);
      // And the master is not spinning on the directory it could not make.
      const before = cpuTicks(server.masterPid());
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.ok(cpuTicks(server.masterPid()) - before < 30, 'the master is busy with nothing');
    } finally {
      await server.stop();
    }
  });

  it('writes text lines when format = "text"', async () => {
    const server = new TestServer();
    const file = path.join(server.dir, 'audit.txt');
    try {
      await server.start(`[security.audit]\nlog_file = "${file}"\nformat = "text"\n[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`);
      await rawRequest(server.port, REJECTED);
      const line = await waitFor('text line', () =>
        readText(file)
          .split('\n')
          .find((entry) => entry.includes('request.duplicate_host')),
      );
      assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z request\.duplicate_host .*clientIp=127\.0\.0\.1/);
      assert.ok(!readText(file).includes(SECRET));
    } finally {
      await server.stop();
    }
  });
});
