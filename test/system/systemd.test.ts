/**
 * Life under systemd (issue 7), without systemd as PID 1: a real notify
 * socket (native-helpers/tests/notify-listen, a unix datagram socket that
 * reports each sender's pid) receiving READY, RELOADING/READY, a refused
 * reload's STATUS, WATCHDOG and STOPPING from the master; socket activation
 * through systemd-socket-activate; the unit files through
 * `systemd-analyze verify`.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createInterface } from 'node:readline';
import { BIN, cli, freePort, request, ROOT, TestServer, waitFor } from '../support/harness.js';

const NATIVE = path.join(ROOT, 'native-helpers');
const LISTENER = path.join(NATIVE, 'build/tests/notify-listen');

interface Notification {
  pid: number;
  fields: Record<string, string>;
}

/** A notify socket in `dir`, collecting every datagram with its sender's pid. */
async function notifySocket(dir: string): Promise<{ path: string; messages: Notification[]; child: ChildProcess }> {
  const socketPath = path.join(dir, 'notify.sock');
  const child = spawn(LISTENER, [socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: Notification[] = [];
  let listening!: () => void;
  const ready = new Promise<void>((resolve) => (listening = resolve));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line === 'listening') return listening();
    const [pid, text] = line.split('\t');
    const fields = Object.fromEntries(
      (text ?? '').split('|').map((field) => [field.slice(0, field.indexOf('=')), field.slice(field.indexOf('=') + 1)]),
    );
    messages.push({ pid: Number(pid), fields });
  });
  await ready;
  return { path: socketPath, messages, child };
}

before(() => {
  const make = spawnSync('make', ['-C', NATIVE, 'all', 'test-programs'], { encoding: 'utf8' });
  assert.equal(make.status, 0, make.stderr);
});

describe('sd_notify', () => {
  const server = new TestServer();
  let notify: Awaited<ReturnType<typeof notifySocket>>;
  const body = () => `[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"`;

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    notify = await notifySocket(server.dir);
    process.env.NOTIFY_SOCKET = notify.path;
    process.env.WATCHDOG_USEC = '400000';
    try {
      await server.start(body());
    } finally {
      delete process.env.NOTIFY_SOCKET;
      delete process.env.WATCHDOG_USEC;
    }
  });
  after(async () => {
    await server.stop();
    notify.child.kill();
  });

  it('READY=1 with MAINPID once every worker of the first generation is ready, sent as the master', async () => {
    const ready = await waitFor('READY=1', () => notify.messages.find((m) => m.fields.READY === '1'));
    const master = server.masterPid();
    assert.equal(ready.pid, master, 'credentials name the master');
    assert.equal(ready.fields.MAINPID, String(master));
    assert.match(ready.fields.STATUS ?? '', /^serving: generation 1, 2 workers$/);
    assert.ok(server.status().workers.every((worker) => worker.state === 'ready'));
  });

  it('WATCHDOG=1 at half of WATCHDOG_USEC while workers serve', async () => {
    const before = notify.messages.filter((m) => m.fields.WATCHDOG === '1').length;
    await new Promise((resolve) => setTimeout(resolve, 700));
    const after = notify.messages.filter((m) => m.fields.WATCHDOG === '1').length;
    assert.ok(after - before >= 2, `${after - before} pings in 700 ms`);
  });

  it('a reload says RELOADING=1 with MONOTONIC_USEC, then READY=1', async () => {
    const from = notify.messages.length;
    assert.equal(cli(['reload', '-c', server.configFile]).status, 0);
    await waitFor('READY after reload', () => notify.messages.slice(from).find((m) => m.fields.READY === '1'));
    const sequence = notify.messages.slice(from).filter((m) => m.fields.WATCHDOG === undefined);
    assert.equal(sequence[0]?.fields.RELOADING, '1');
    const monotonic = Number(sequence[0]?.fields.MONOTONIC_USEC);
    assert.ok(Number.isSafeInteger(monotonic) && monotonic > 0);
    assert.equal(sequence[1]?.fields.READY, '1');
    assert.match(sequence[1]?.fields.STATUS ?? '', /^serving: generation 2/);
  });

  it('a refused reload says READY=1 with the reason in STATUS', async () => {
    const from = notify.messages.length;
    writeFileSync(server.configFile, `${readFileSync(server.configFile, 'utf8')}\n[server.http3]\nbogus = 1\n`);
    assert.equal(cli(['reload', '-c', server.configFile]).status, 1);
    const ready = await waitFor('READY after refusal', () => notify.messages.slice(from).find((m) => m.fields.READY === '1'));
    assert.match(ready.fields.STATUS ?? '', /^reload refused, generation 2 still serving: .*server\.http3\.bogus/);
  });

  it('STOPPING=1 on stop', async () => {
    const from = notify.messages.length;
    await server.halt();
    assert.ok(notify.messages.slice(from).some((m) => m.fields.STOPPING === '1'));
  });
});

describe('socket activation', () => {
  const server = new TestServer();
  let activator: ChildProcess | null = null;
  let port = 0;

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'activated\n');
    port = await freePort();
    server.port = port;
    server.writeConfig(`[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"`);
    // systemd-socket-activate holds the port and starts the master on the first connection.
    activator = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, BIN, 'start', '-c', server.configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: process.env,
    });
    activator.stdout!.on('data', (chunk: Buffer) => (server.output += chunk.toString()));
    activator.stderr!.on('data', (chunk: Buffer) => (server.output += chunk.toString()));
    server.process = activator;
  });
  after(async () => {
    cli(['stop', '-c', server.configFile]);
    activator?.kill();
    await server.stop();
  });

  it('the master adopts the socket systemd passed and its workers serve on it', async () => {
    // The first request starts the master; it waits in the socket's backlog meanwhile.
    // (Refused only until systemd-socket-activate itself listens.)
    const response = await waitFor('an answer', () => request(port, { path: '/', headers: { Host: 'a.test' } }).catch(() => null), 20_000);
    assert.equal(response.status, 200);
    assert.equal(response.body, 'activated\n');
    await waitFor('the adoption logged', () =>
      server.logLines().find((line) => line.msg === 'socket activation: listening sockets from systemd'),
    );
  });

  it('LISTEN_* never reaches a worker; the socket is kept across a reload', async () => {
    for (const worker of server.status().workers) {
      const environment = readFileSync(`/proc/${worker.pid}/environ`, 'latin1');
      assert.doesNotMatch(environment, /LISTEN_(FDS|PID|FDNAMES)=/);
    }
    assert.equal(cli(['reload', '-c', server.configFile]).status, 0);
    assert.equal((await request(port, { path: '/', headers: { Host: 'a.test' } })).status, 200);
  });
});

describe('logging to the journal', () => {
  it('leaves the timestamp to journald when stdout is the journal; the level comes from the config', async () => {
    const server = new TestServer();
    try {
      server.port = await freePort();
      server.writeConfig(`[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"`, 'log_level = "info"\n');
      const logFile = path.join(server.dir, 'journal.log');
      const fd = openSync(logFile, 'w');
      const { dev, ino } = fstatSync(fd);
      const master = spawn(BIN, ['start', '-c', server.configFile], {
        stdio: ['ignore', fd, fd],
        env: { ...process.env, JOURNAL_STREAM: `${dev}:${ino}` },
      });
      closeSync(fd);
      await waitFor('started', () => readFileSync(logFile, 'utf8').includes('miwidothttp started') || undefined);
      cli(['stop', '-c', server.configFile]);
      await waitFor('stopped', () => master.exitCode !== null || undefined);
      const lines = readFileSync(logFile, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.ok(lines.length > 3);
      for (const line of lines) {
        assert.equal(line.time, undefined, 'no timestamp of our own');
        assert.equal(typeof line.level, 'number');
      }
      assert.ok(
        lines.some((line) => line.msg === 'worker ready'),
        'info lines, as log_level says',
      );
    } finally {
      await server.stop();
    }
  });
});

describe('unit files', () => {
  it('systemd-analyze verify finds nothing to say about the service and socket units', () => {
    const server = new TestServer();
    try {
      const unit = readFileSync(path.join(ROOT, 'systemd/miwidothttp.service'), 'utf8').replaceAll('@PREFIX@', ROOT);
      writeFileSync(path.join(server.dir, 'miwidothttp.service'), unit);
      writeFileSync(path.join(server.dir, 'miwidothttp.socket'), readFileSync(path.join(ROOT, 'systemd/miwidothttp.socket'), 'utf8'));
      const verify = spawnSync(
        'systemd-analyze',
        ['verify', path.join(server.dir, 'miwidothttp.socket'), path.join(server.dir, 'miwidothttp.service')],
        { encoding: 'utf8' },
      );
      assert.equal(verify.status, 0, verify.stderr);
      assert.equal(`${verify.stdout}${verify.stderr}`.trim(), '', 'no warnings');
      for (const directive of ['Type=notify', 'Delegate=yes', 'KillMode=mixed', 'Restart=on-failure', 'LimitNOFILE='])
        assert.match(unit, new RegExp(`^${directive}`, 'm'));
      assert.match(unit, /^ExecReload=.*miwidothttp reload -c \/etc\/miwidothttp\/miwidothttp\.toml$/m);
    } finally {
      void server.stop();
    }
  });
});
