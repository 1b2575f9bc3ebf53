/**
 * Master and worker lifecycle through the real CLI: start, serve, status,
 * stop; crash replacement and backoff; worker ready timeout; the master's
 * death takes every worker with it; pid file handling.
 */
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { BIN, cli, isRunning, processState, readText, request, tempDir, TestServer, waitFor, type StatusJson } from '../support/harness.js';

const site = (server: TestServer): string => {
  writeFileSync(path.join(server.dir, 'index.html'), 'hello from miwidothttp\n');
  return `[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`;
};

describe('start, serve, status, stop', () => {
  const server = new TestServer();
  after(() => server.stop());

  it('starts one master and N workers that serve, and reports them', async () => {
    await server.start(site(server));
    const response = await request(server.port, { path: '/' });
    assert.equal(response.status, 200);
    assert.equal(response.body, 'hello from miwidothttp\n');

    const status = server.status();
    assert.equal(status.master.pid, server.masterPid());
    assert.equal(status.master.generation, 1);
    assert.equal(status.workers.length, 2);
    for (const worker of status.workers) {
      assert.equal(worker.state, 'ready');
      assert.equal(worker.generation, 1);
      assert.ok(isRunning(worker.pid));
      assert.equal(typeof worker.uid, 'number');
    }
    assert.deepEqual(
      status.listeners.map((listener) => listener.id),
      [`http 127.0.0.1:${server.port}`],
    );
    const human = cli(['status', '-c', server.configFile]);
    assert.equal(human.status, 0);
    assert.match(human.stdout, /generation 1/);
  });

  it('the master holds the sockets but never accepts: every connection is served by a worker', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, () => request(server.port, { path: '/' })));
    assert.ok(answers.every((answer) => answer.status === 200));
    assert.equal(tcpSocketsOf(server.masterPid()).established, 0, 'the master must not hold an accepted connection');
  });

  it('refuses a second start while the first runs', () => {
    const second = cli(['start', '-c', server.configFile]);
    assert.equal(second.status, 1);
    assert.match(second.stderr, /already running \(pid \d+/);
  });

  it('stop drains, waits for the master to exit, and removes the pid file', async () => {
    const pids = [server.masterPid(), ...server.status().workers.map((worker) => worker.pid)];
    const stopped = cli(['stop', '-c', server.configFile]);
    assert.equal(stopped.status, 0);
    for (const pid of pids) assert.equal(isRunning(pid), false, `pid ${pid} still running after stop`);
    const status = cli(['status', '-c', server.configFile]);
    assert.equal(status.status, 3);
  });
});

describe('crashes', () => {
  const server = new TestServer();
  after(() => server.stop());

  it('replaces a worker killed with SIGKILL within a second', async () => {
    await server.start(site(server));
    const before = server.status().workers.find((worker) => worker.slot === 0)!;
    process.kill(before.pid, 'SIGKILL');
    const replacement = await waitFor('replacement worker', () => {
      const worker = server.status().workers.find((w) => w.slot === 0 && w.pid !== before.pid && w.state === 'ready');
      return worker ?? null;
    });
    // Measured by the master's own clock: death noticed -> replacement ready.
    const died = await waitFor('death logged', () =>
      server.logLines().find((line) => line.msg === 'worker died' && line.workerPid === before.pid),
    );
    const ready = await waitFor('ready logged', () =>
      server.logLines().find((line) => line.msg === 'worker ready' && line.workerPid === replacement.pid),
    );
    const gapMs = Date.parse(String(ready.time)) - Date.parse(String(died.time));
    assert.ok(gapMs < 1000, `replacement took ${gapMs} ms`);
    assert.equal(replacement.restarts, 1);
    assert.equal((await request(server.port, { path: '/' })).status, 200);
  });

  it('backs off, with a log line, when a slot keeps crashing', async () => {
    for (let round = 0; round < 3; round++) {
      const victim = await waitFor('slot 0 ready', () => server.status().workers.find((w) => w.slot === 0 && w.state === 'ready') ?? null);
      process.kill(victim.pid, 'SIGKILL');
      await waitFor('slot 0 gone', () => !isRunning(victim.pid));
    }
    const backoff = await waitFor('crash loop log', () =>
      server.logLines().find((line) => line.msg === 'worker crash loop: backing off before the next start'),
    );
    assert.ok((backoff.crashesInARow as number) >= 2);
    assert.ok((backoff.delayMs as number) > 0);
    await waitFor('slot 0 back', () => server.status().workers.find((w) => w.slot === 0 && w.state === 'ready') ?? null);
  });

  it('leaves no worker alive 3 s after the master is killed with SIGKILL', async () => {
    const workers = server.status().workers.map((worker) => worker.pid);
    assert.ok(workers.length > 0);
    process.kill(server.masterPid(), 'SIGKILL');
    await sleep(3000);
    for (const pid of workers) {
      // A zombie passes `kill -0`; /proc tells the truth.
      const state = processState(pid);
      assert.ok(state === null || state === 'Z', `worker ${pid} is still ${state}`);
    }
  });

  it("treats the dead master's pid file as stale and starts again", async () => {
    await server.start(site(server));
    assert.equal((await request(server.port, { path: '/' })).status, 200);
  });
});

describe('log files', () => {
  it('writes to [server].log_file and reopens it on SIGUSR1 (rotation)', async () => {
    const server = new TestServer();
    const logFile = path.join(server.dir, 'logs', 'miwidothttp.log');
    try {
      await server.start(site(server), `log_file = "${logFile}"\naccess_log = true`, logFile);
      renameSync(logFile, `${logFile}.1`);
      process.kill(server.masterPid(), 'SIGUSR1');
      await waitFor('reopened', () => readText(logFile).includes('log files reopened'));
      await request(server.port, { path: '/' });
      await waitFor('access line in the new file', () => readText(logFile).includes('"access":true'));
      assert.ok(!readText(`${logFile}.1`).includes('"access":true'), 'the rotated file is left alone');
    } finally {
      await server.stop();
    }
  });
});

describe('start failures', () => {
  it('kills a worker that never reports ready, and start fails with the reason', async () => {
    const server = new TestServer();
    try {
      await assert.rejects(server.start(site(server), 'worker_ready_timeout = 0.001'), /exited with 1/);
      assert.match(server.output, /start failed: not ready after 1 ms/);
      const masterPid = server.process!.pid!;
      assert.equal(isRunning(masterPid), false);
      assert.deepEqual(childrenOf(masterPid), [], 'no worker outlives a failed start');
    } finally {
      await server.stop();
    }
  });

  it('refuses to start on an invalid config, naming the key', async () => {
    const server = new TestServer();
    try {
      await assert.rejects(server.start(`${site(server)}\n[security.limits]\nmax_body_size = -5\n`), /security\.limits\.max_body_size/);
    } finally {
      await server.stop();
    }
  });

  it('reports a port it cannot bind', async () => {
    const first = new TestServer();
    const second = new TestServer();
    try {
      await first.start(site(first));
      second.port = first.port;
      await assert.rejects(second.start(site(second)), /cannot bind 127\.0\.0\.1:\d+: EADDRINUSE/);
    } finally {
      await first.stop();
      await second.stop();
    }
  });
});

/** Live processes whose parent is pid. */
function childrenOf(pid: number): number[] {
  return readdir('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => /^PPid:\s+(\d+)$/m.exec(readText(`/proc/${entry}/status`))?.[1] === String(pid))
    .map(Number)
    .filter(isRunning);
}

/** Count the TCP sockets a process holds, by state, from /proc/PID/fd and /proc/net/tcp. */
function tcpSocketsOf(pid: number): { established: number } {
  const inodes = new Set<string>();
  for (const fd of readdir(`/proc/${pid}/fd`)) {
    const target = readlink(`/proc/${pid}/fd/${fd}`);
    const match = /^socket:\[(\d+)\]$/.exec(target ?? '');
    if (match) inodes.add(match[1]!);
  }
  let established = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readText(table).split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > 9 && inodes.has(fields[9]!) && fields[3] === '01') established += 1;
    }
  }
  return { established };
}

const readdir = (dir: string): string[] => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};
const readlink = (file: string): string | null => {
  try {
    return readlinkSync(file);
  } catch {
    return null;
  }
};

describe('the built-in default (README command 1)', () => {
  it('serves the bundled page on 127.0.0.1:8080 without a config file, and stops', async () => {
    const cwd = tempDir();
    const child = spawn(BIN, ['start'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await waitFor('default server started', () => output.includes('"miwidothttp started"') || child.exitCode !== null);
      assert.equal(child.exitCode, null, output);
      const page = await request(8080, { path: '/' });
      assert.equal(page.status, 200);
      assert.match(page.body, /miwidothttp is running/);
      const status = cli(['status', '--json'], { cwd });
      assert.equal(status.status, 0);
      assert.equal((JSON.parse(status.stdout) as StatusJson).listeners[0]!.id, 'http 127.0.0.1:8080');
    } finally {
      assert.equal(cli(['stop'], { cwd }).status, 0);
      await waitFor('default server exited', () => child.exitCode !== null);
    }
  });
});
