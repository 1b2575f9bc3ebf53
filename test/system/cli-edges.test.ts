/**
 * Issue 14, the command line at its edges: `reload -c FILE` loads FILE (as
 * `caddy reload --config` does) and keeps reading it; an unset ${VAR} at
 * reload is said to be the master's environment's, and `check` says where
 * it read them; `status` names the pid file it looked at; stop, reload and
 * status as a user who is not root; a log file that cannot be opened (under
 * /proc, a directory, or one that became a directory before SIGUSR1); a
 * 5,000-deep TOML array; a FIFO at bans.json; a symlinked audit log. Each is
 * one line, no stack trace, no hang, and a running server keeps serving.
 * `--version` and `-v` print package.json's version.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, cli, freePort, readText, request, ROOT, TestServer, tempDir, waitFor } from '../support/harness.js';

const STACK = /\n\s+at |node:internal/;

/** `BIN args` as the user nobody. */
function asNobody(args: string[]): { status: number | null; output: string } {
  const result = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', BIN, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    cwd: '/',
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** `start -c file` until it exits (or 30 s): its status and output. */
function startOnce(file: string): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(BIN, ['start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}

const get = async (server: TestServer): Promise<string> => (await request(server.port, { path: '/', headers: { Host: 'any.test' } })).body;

describe('issue 14: reload -c FILE, ${VAR} at reload, status', () => {
  const server = new TestServer();
  let other = '';
  let withVariable = '';

  before(async () => {
    for (const site of ['a', 'b']) {
      mkdirSync(path.join(server.dir, site));
      chmodSync(path.join(server.dir, site), 0o755);
      writeFileSync(path.join(server.dir, site, 'index.html'), `${site}\n`);
    }
    await server.start(`[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}/a"`, 'workers = 1\n');
    const text = readFileSync(server.configFile, 'utf8');
    other = path.join(server.dir, 'other.toml');
    writeFileSync(other, text.replace(`root = "${server.dir}/a"`, `root = "${server.dir}/b"`));
    withVariable = path.join(server.dir, 'variable.toml');
    writeFileSync(withVariable, `${text}\n[security.headers.custom]\n"X-Site" = "\${MIWIDOTHTTP_TEST_SITE}"\n`);
  });
  after(() => server.stop());

  it('reload -c other.toml loads other.toml, and later reloads read it too', async () => {
    assert.equal(await get(server), 'a\n');
    const result = cli(['reload', '-c', other]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(await get(server), 'b\n');
    assert.equal(JSON.parse(cli(['status', '-c', other, '--json']).stdout).master.config, other);
    process.kill(server.masterPid(), 'SIGHUP');
    await waitFor('the SIGHUP reload', () => server.logLines().filter((line) => line.msg === 'configuration reloaded').length >= 2);
    assert.equal(await get(server), 'b\n', 'SIGHUP reloads the file named last');
  });

  it("an unset ${VAR}: check says whose environment it read; reload says it is the master's", () => {
    const env = { ...process.env, MIWIDOTHTTP_TEST_SITE: 'site' };
    const checked = cli(['check', '-c', withVariable], { env });
    assert.equal(checked.status, 0, checked.stderr);
    assert.match(
      checked.stdout,
      /\$\{MIWIDOTHTTP_TEST_SITE\} were read from this shell's environment; a reload reads them from the running master's/,
    );
    // The variable is set for the CLI, not for the master: the reload is refused, saying so.
    const reloaded = cli(['reload', '-c', withVariable], { env });
    assert.equal(reloaded.status, 1);
    assert.match(
      reloaded.stderr,
      /security\.headers\.custom\.X-Site: environment variable MIWIDOTHTTP_TEST_SITE is not set in the running master's environment/,
    );
  });

  it('status without -c names the pid file it looked at', () => {
    const cwd = tempDir();
    const plain = spawnSync(BIN, ['status'], { cwd, encoding: 'utf8' });
    assert.equal(plain.status, 3);
    assert.match(plain.stdout, /not running \(no live master in \/run\/miwidothttp\.pid\)/);
    const json = JSON.parse(spawnSync(BIN, ['status', '--json'], { cwd, encoding: 'utf8' }).stdout) as { pidFile: string };
    assert.equal(json.pidFile, '/run/miwidothttp.pid');
  });

  it('stop, reload and status as a user who is not root: one line each, and the server keeps serving', async () => {
    chmodSync(server.configFile, 0o644);
    for (const command of ['stop', 'reload', 'status']) {
      const result = asNobody([command, '-c', server.configFile]);
      assert.notEqual(result.status, 0, `${command} succeeded as nobody`);
      assert.equal(result.output.trim().split('\n').length, 1, `${command}: ${result.output}`);
      assert.doesNotMatch(result.output, STACK, command);
      assert.match(result.output, /root/, `${command} says root is needed: ${result.output}`);
    }
    assert.equal(await get(server), 'b\n');
    const started = asNobody(['start', '-c', server.configFile]);
    assert.equal(started.status, 1);
    assert.doesNotMatch(started.output, STACK);
  });

  it('--version and -v print the version in package.json', () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(cli(['--version']).stdout.trim(), version);
    assert.equal(cli(['-v']).stdout.trim(), version);
  });
});

describe('issue 14: files that are not what they should be', () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  writeFileSync(path.join(dir, 'index.html'), 'ok\n');
  let counter = 0;
  const config = async (body: string, server = ''): Promise<string> => {
    const file = path.join(dir, `c${counter++}.toml`);
    writeFileSync(
      file,
      `[server]\nhttp_port = ${await freePort()}\nworkers = 1\npid_file = "${dir}/c${counter}.pid"\nstate_dir = "${dir}/state${counter}"\n${server}\n` +
        `[process.isolation]\nchroot = "${dir}"\n${body}\n[[vhosts]]\ndomains = ["*"]\nroot = "${dir}"\n`,
    );
    return file;
  };

  const refused: [string, () => Promise<string>, RegExp][] = [
    ['log_file under /proc', () => config('', 'log_file = "/proc/x.log"\n'), /server\.log_file: \/proc lies on \/proc/],
    ['log_file that is a directory', () => config('', `log_file = "${dir}"\n`), /server\.log_file: .* is a directory/],
    [
      'an audit log that is a symbolic link',
      async () => {
        const target = path.join(dir, 'elsewhere.log');
        writeFileSync(target, '');
        symlinkSync(target, path.join(dir, 'audit-link.log'));
        return config(`[security.audit]\nlog_file = "${dir}/audit-link.log"\n`);
      },
      /security\.audit\.log_file: .*audit-link\.log is a symbolic link/,
    ],
    [
      'a 5,000-deep TOML array',
      async () => {
        const file = path.join(dir, 'deep.toml');
        writeFileSync(file, `[server]\nworkers = ${'['.repeat(5000)}${']'.repeat(5000)}\n`);
        return file;
      },
      /deep\.toml:\d+:\d+: syntax error: .*nested/,
    ],
  ];
  for (const [name, make, expected] of refused) {
    it(`${name}: check and start refuse it in one line`, async () => {
      const file = await make();
      const checked = cli(['check', '-c', file]);
      assert.equal(checked.status, 1, checked.stdout);
      assert.match(checked.stderr, expected);
      assert.doesNotMatch(checked.stderr, STACK);
      const started = await startOnce(file);
      assert.equal(started.status, 1, started.output);
      assert.match(started.output, expected);
      assert.doesNotMatch(started.output, STACK);
    });
  }

  it('a FIFO at bans.json: start does not hang, says so, and says how many bans it loaded', async () => {
    const file = await config('');
    const stateDir = `${dir}/state${counter}`;
    mkdirSync(stateDir, { mode: 0o700 });
    execFileSync('mkfifo', [path.join(stateDir, 'bans.json')]);
    const server = spawn(BIN, ['start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await waitFor('started', () => output.includes('"miwidothttp started"'), 30_000);
      assert.match(output, /"why":"not a regular file".*the ban list is damaged; starting without it/);
      assert.match(output, /"bans":0,"msg":"loaded 0 bans from /);
      assert.doesNotMatch(output, STACK);
    } finally {
      cli(['stop', '-c', file]);
      server.kill('SIGKILL');
    }
  });
});

describe('issue 14: a log file that becomes a directory before SIGUSR1; a reload refused', () => {
  const server = new TestServer();
  let logFile = '';
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    mkdirSync(path.join(server.dir, 'logs'), { mode: 0o755 });
    logFile = path.join(server.dir, 'logs/server.log');
    await server.start(`[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"`, `workers = 1\nlog_file = "${logFile}"\n`, logFile);
  });
  after(() => server.stop());

  it('SIGUSR1 after the log file became a directory: one line, the old file kept, still serving', async () => {
    const rotated = `${logFile}.1`;
    renameSync(logFile, rotated);
    mkdirSync(logFile);
    process.kill(server.masterPid(), 'SIGUSR1');
    await waitFor('the refusal in the old file', () => readText(rotated).includes('log file not reopened'));
    assert.match(readText(rotated), /"problem":"cannot open [^"]*server\.log: EISDIR"/);
    assert.equal((await request(server.port, { path: '/', headers: { Host: 'any.test' } })).status, 200);
    assert.equal(server.status().running, true);
    assert.doesNotMatch(server.output, STACK);
  });

  it('a reload refused (a 5,000-deep array) is audited as config.reload_refused and the server keeps serving', async () => {
    const good = readFileSync(server.configFile, 'utf8');
    writeFileSync(server.configFile, `${good}\n[extra]\nx = ${'['.repeat(5000)}${']'.repeat(5000)}\n`);
    try {
      // The CLI cannot find a master by a file that does not parse: it says why, in one line.
      const result = cli(['reload', '-c', server.configFile]);
      assert.equal(result.status, 1);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, /^reload refused: .*syntax error/);
      assert.doesNotMatch(result.stderr, STACK);
      // The master, told by signal, refuses it and audits the refusal.
      process.kill(server.masterPid(), 'SIGHUP');
      await waitFor('audit', () => readText(`${logFile}.1`).includes('"audit":"config.reload_refused"'));
      assert.doesNotMatch(readText(`${logFile}.1`), STACK);
      assert.equal((await request(server.port, { path: '/', headers: { Host: 'any.test' } })).status, 200);
    } finally {
      writeFileSync(server.configFile, good);
    }
  });
});
