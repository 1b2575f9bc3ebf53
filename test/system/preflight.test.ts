/**
 * Issue 14, check is start without starting: each host problem the issue
 * names is refused by `check`, by `start` (before anything is bound or
 * written) and by `reload` (the running generation keeps serving), with the
 * same one line naming the key: the workers' user missing or root, an
 * absurd max_memory (printed as a size), AppArmor asked for and absent, a
 * vhost root missing or unreadable by the workers' user, a domain claimed
 * twice, a key file others can read, a pid_file or control_socket that is
 * someone else's file, and whatever the sandbox helper's --check refuses of
 * the options a worker gets.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, cli, freePort, request, TestServer, tempDir } from '../support/harness.js';
import { TestCa } from '../support/test-ca.js';

/** `start -c file`: its exit code and output, or null if it started (then it is stopped). */
function start(file: string): Promise<{ status: number | null; output: string } | null> {
  return new Promise((resolve) => {
    const child = spawn(BIN, ['start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"miwidothttp started"')) {
        child.kill('SIGTERM');
        resolve(null);
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}

describe('issue 14: check, start and reload refuse what the host cannot do, alike', () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const site = path.join(dir, 'www');
  mkdirSync(site);
  chmodSync(site, 0o755);
  writeFileSync(path.join(site, 'index.html'), 'ok\n');
  const closed = path.join(dir, 'closed');
  mkdirSync(closed);
  chmodSync(closed, 0o700);
  const locked = path.join(dir, 'locked');
  mkdirSync(path.join(locked, 'www'), { recursive: true });
  chmodSync(locked, 0o750);
  chmodSync(path.join(locked, 'www'), 0o755);
  const notAPidFile = path.join(dir, 'notes.txt');
  writeFileSync(notAPidFile, 'important notes\n');
  const ca = new TestCa(dir);
  const openKey = ca.issue('open', ['open.test']);
  chmodSync(openKey.key, 0o644);

  let counter = 0;
  /** A config in its own file: `body` after a [server] with its own pid file and port. */
  const config = async (body: string, server = ''): Promise<string> => {
    const file = path.join(dir, `c${counter++}.toml`);
    const pidFile = /pid_file\s*=/.test(server) ? '' : `pid_file = "${path.join(dir, `c${counter}.pid`)}"\n`;
    const isolation = body.includes('[process.isolation]') ? '' : `[process.isolation]\nchroot = "${dir}"\n`;
    const vhost = body.includes('[[vhosts]]') ? '' : `[[vhosts]]\ndomains = ["*"]\nroot = "${site}"\n`;
    writeFileSync(
      file,
      `[server]\nhttp_port = ${await freePort()}\nworkers = 1\nstate_dir = "${dir}/state"\n${pidFile}${server}\n${isolation}${body}\n${vhost}`,
    );
    return file;
  };

  const cases: { name: string; body: string; server?: string; expected: RegExp }[] = [
    {
      name: 'run_as_user that does not exist',
      body: `[process.isolation]\nchroot = "${dir}"\nrun_as_user = "no-such-user"\n`,
      expected: /process\.isolation\.run_as_user: no such user/,
    },
    {
      name: 'run_as_user root',
      body: `[process.isolation]\nchroot = "${dir}"\nrun_as_user = "root"\n`,
      expected: /process\.isolation\.run_as_user: workers never run as root/,
    },
    {
      name: 'max_memory past any machine, printed as written',
      body: `[process.isolation]\nchroot = "${dir}"\nmax_memory = "99999999999T"\n`,
      expected: /process\.isolation\.max_memory: 99999999999T is more than any machine has/,
    },
    {
      name: "max_memory past this host's memory, printed as a size",
      body: `[process.isolation]\nchroot = "${dir}"\nmax_memory = "1000T"\n`,
      expected: /process\.isolation\.max_memory: 1000T is more than this host's memory \([0-9.]+[KMGT]\)/,
    },
    {
      name: 'AppArmor on a host without it',
      body: `[process.isolation]\nchroot = "${dir}"\nenable_apparmor = true\n`,
      expected: /process\.isolation\.enable_apparmor: AppArmor is not enabled/,
    },
    {
      name: 'a vhost root that does not exist',
      body: `[[vhosts]]\ndomains = ["*"]\nroot = "${dir}/missing"\n`,
      expected: /vhosts\[0\]\.root: .*missing: no such directory/,
    },
    {
      name: "a vhost root the workers' user cannot list",
      body: `[[vhosts]]\ndomains = ["*"]\nroot = "${closed}"\n`,
      expected: /vhosts\[0\]\.root: .*closed cannot be served: the workers' own uids \(\d+ on\) cannot list/,
    },
    {
      name: "a vhost root below a directory the workers' user cannot enter",
      body: `[[vhosts]]\ndomains = ["*"]\nroot = "${locked}/www"\n`,
      expected: /vhosts\[0\]\.root: .*cannot enter .*locked \(mode 0750/,
    },
    {
      name: 'a domain claimed twice',
      body: `[[vhosts]]\ndomains = ["a.test"]\nroot = "${site}"\n[[vhosts]]\ndomains = ["b.test", "a.test"]\nroot = "${site}"\n`,
      expected: /vhosts\[1\]\.domains\[1\]: "a\.test" is already claimed by vhosts\[0\]/,
    },
    {
      name: 'a key file others can read',
      body: `[ssl.domains."open.test"]\ncert_file = "${openKey.cert}"\nkey_file = "${openKey.key}"\n`,
      server: `https_port = ${0}\n`,
      expected: /ssl\.domains\."open\.test"\.key_file: .* is readable by others \(mode 0644\)/,
    },
    {
      name: "a pid_file that is someone's file",
      body: '',
      server: `pid_file = "${notAPidFile}"\n`,
      expected: /server\.pid_file: .*notes\.txt is not a pid file: start would overwrite it/,
    },
    {
      name: 'a control_socket that is a directory',
      body: '',
      server: `control_socket = "${closed}"\n`,
      expected: /server\.control_socket: .*closed exists and is not a socket/,
    },
    {
      name: "what the sandbox helper's --check refuses: a working_dir missing in the jail",
      body: `[process.isolation]\nchroot = "${dir}"\nworking_dir = "/nowhere"\n`,
      expected: /process\.isolation\.working_dir: the sandbox helper refuses it: --working-dir \/nowhere/,
    },
  ];

  for (const entry of cases) {
    it(entry.name, async () => {
      const server = (entry.server ?? '').replace('https_port = 0', `https_port = ${await freePort()}`);
      const file = await config(entry.body, server);
      const checked = cli(['check', '-c', file]);
      assert.equal(checked.status, 1, `check passed:\n${checked.stdout}`);
      const line = checked.stderr.split('\n').find((candidate) => entry.expected.test(candidate));
      assert.ok(line, checked.stderr);
      assert.doesNotMatch(checked.stderr, /e\+\d|\n\s+at /, 'a size in exponent form, or a stack trace');
      const started = await start(file);
      assert.notEqual(started, null, 'start started');
      assert.equal(started!.status, 1);
      assert.ok(started!.output.includes(line), `start said otherwise:\n${started!.output}`);
      assert.equal(readFileSync(notAPidFile, 'utf8'), 'important notes\n');
    });
  }
});

describe('issue 14: reload refuses them too, and the running generation keeps serving', () => {
  const server = new TestServer();
  let good = '';
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    await server.start(`[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"`, 'workers = 1\n');
    good = readFileSync(server.configFile, 'utf8');
  });
  after(() => server.stop());

  for (const [name, edit, expected] of [
    [
      'run_as_user root',
      (text: string) => text.replace(`chroot = "${server.dir}"`, `chroot = "${server.dir}"\nrun_as_user = "root"`),
      /run_as_user: workers never run as root/,
    ],
    [
      'a vhost root that does not exist',
      (text: string) => text.replace(`\nroot = "${server.dir}"`, `\nroot = "${server.dir}/gone"`),
      /vhosts\[0\]\.root: .*no such directory/,
    ],
  ] as const) {
    it(name, async () => {
      writeFileSync(server.configFile, edit(good));
      const result = cli(['reload', '-c', server.configFile]);
      assert.equal(result.status, 1);
      assert.match(result.stderr, expected);
      assert.equal((await request(server.port, { path: '/', headers: { Host: 'any.test' } })).status, 200);
      writeFileSync(server.configFile, good);
    });
  }
});
