/**
 * Reload: zero failed requests across reloads under load, refusal of an
 * invalid config (the old one keeps serving), listeners added and dropped,
 * SIGHUP, one reload at a time.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, cliAsync, freePort, isRunning, request, TestServer, waitFor, type StatusJson } from '../support/harness.js';
import { steadyLoad } from '../support/load.js';

describe('reload', () => {
  const server = new TestServer();
  let site: string;
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'v1\n');
    site = `[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`;
    await server.start(site);
  });
  after(() => server.stop());

  it('performs 10 reloads under steady load with zero failed requests', async () => {
    const load = steadyLoad(server.port, 8);
    const workerPids = new Set<number>();
    for (let i = 0; i < 10; i++) {
      const result = await cliAsync(['reload', '-c', server.configFile]);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`generation ${i + 2} serving`));
      const status = JSON.parse((await cliAsync(['status', '--json', '-c', server.configFile])).stdout) as StatusJson;
      for (const worker of status.workers) workerPids.add(worker.pid);
    }
    const { ok, failed } = await load.stop();
    assert.deepEqual(failed, [], `failed requests during reloads (${ok} ok)`);
    assert.ok(ok > 100, `the load ran (${ok} requests)`);
    assert.ok(workerPids.size >= 10, 'every reload started new workers');
    assert.equal(server.status().master.generation, 11);
  });

  it('retires the old generation: its workers exit once drained', async () => {
    const old = server.status().workers.map((worker) => worker.pid);
    assert.equal(cli(['reload', '-c', server.configFile]).status, 0);
    await waitFor('old workers gone', () => old.every((pid) => !isRunning(pid)));
    const status = server.status();
    assert.ok(status.workers.every((worker) => worker.generation === status.master.generation));
  });

  it('refuses an invalid config, says why, and keeps serving the old one', async () => {
    const generation = server.status().master.generation;
    server.writeConfig(`${site}\n[security.limits]\nmax_headers = "many"\n`);
    const result = cli(['reload', '-c', server.configFile]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /reload refused: .*security\.limits\.max_headers/);
    assert.equal(server.status().master.generation, generation);
    const response = await request(server.port, { path: '/' });
    assert.equal(response.status, 200);
    assert.equal(response.body, 'v1\n');
    const refusal = server.logLines().find((line) => line.audit === 'config.reload_refused');
    assert.ok(refusal, 'the refusal is logged as an audit event');
  });

  it('a reload whose new listener cannot be bound is refused; the old listeners keep serving', async () => {
    const blocker = http.createServer();
    const busy = await freePort();
    await new Promise<void>((resolve) => blocker.listen(busy, '127.0.0.1', resolve));
    try {
      const original = server.port;
      server.port = busy;
      server.writeConfig(site);
      server.port = original;
      const result = cli(['reload', '-c', server.configFile]);
      assert.equal(result.status, 1);
      assert.match(result.stderr, /cannot bind 127\.0\.0\.1:\d+: EADDRINUSE/);
      assert.equal((await request(server.port, { path: '/' })).status, 200);
    } finally {
      blocker.close();
    }
  });

  it('binds listeners the new config adds and closes those it drops', async () => {
    const original = server.port;
    const moved = await freePort();
    server.port = moved;
    server.writeConfig(site);
    const result = cli(['reload', '-c', server.configFile]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal((await request(moved, { path: '/' })).status, 200);
    assert.deepEqual(
      server.status().listeners.map((listener) => listener.port),
      [moved],
    );
    await waitFor('old port closed', async () => {
      try {
        await request(original, { path: '/' });
        return false;
      } catch (error) {
        return (error as NodeJS.ErrnoException).code === 'ECONNREFUSED';
      }
    });
  });

  it('reloads on SIGHUP and serves the new content', async () => {
    writeFileSync(path.join(server.dir, 'other.html'), 'v2\n');
    server.writeConfig(`[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\nindex_files = ["other.html"]\n`);
    const generation = server.status().master.generation;
    process.kill(server.masterPid(), 'SIGHUP');
    await waitFor('new generation', () => server.status().master.generation === generation + 1);
    assert.equal((await request(server.port, { path: '/' })).body, 'v2\n');
  });

  it('runs one reload at a time', async () => {
    const answers = await Promise.all([0, 1, 2].map(() => cliAsync(['reload', '-c', server.configFile])));
    const refused = answers.filter((answer) => answer.status === 1);
    assert.ok(answers.some((answer) => answer.status === 0));
    for (const answer of refused) assert.match(answer.stderr, /already in progress/);
  });
});
