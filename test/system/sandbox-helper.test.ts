/**
 * The sandbox helper (native-helpers/build/miwidothttp-sandbox), run
 * directly: each test tries a forbidden thing from inside the sandbox and
 * expects it to fail, or reads the worker's state from the host's /proc.
 * The jailed program is the pinned node (what the helper really runs), with
 * a small C probe (native-helpers/tests/probe.c) for the syscalls node
 * cannot make. What a compromised worker can try against its neighbours is
 * in sandbox-escape.test.ts. Most tests need root (CI runs as root); as another user they
 * are reported as skipped.
 */
import assert from 'node:assert/strict';
import { fork, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  buildNativeHelpers,
  cleanUp,
  finish,
  HELPER,
  jailDir,
  jailedNode,
  jailedProbe,
  LINE,
  NODE,
  nodeBinds,
  needsRoot,
  ROOT,
  runHelper as run,
  startWaiting,
  statusField,
  WAIT_SCRIPT,
} from '../support/sandbox.js';

before(buildNativeHelpers);
after(cleanUp);

describe('usage and refusals (nothing is applied)', () => {
  test('--help documents every option and exits 0', () => {
    const result = run(['--help']);
    assert.equal(result.status, 0);
    for (const option of [
      '--run-as-user',
      '--run-as-group',
      '--chroot',
      '--bind-ro',
      '--working-dir',
      '--max-memory',
      '--max-cpu-percent',
      '--max-pids',
      '--max-open-files',
      '--cgroup',
      '--seccomp ',
      '--seccomp-action',
      '--apparmor-profile',
      '--keep-fd',
      '--listen-fd',
      '--check',
      '--help',
    ]) {
      assert.match(result.stdout, new RegExp(`^  ${option.trim()} `, 'm'), `--help does not document ${option}`);
    }
    assert.match(result.stdout, /125/);
    assert.match(result.stdout, /126/);
    assert.match(result.stdout, /127/);
  });

  test('an unknown option is bad usage (125), one line', () => {
    const result = run(['--run-as-root', '--', '/bin/true']);
    assert.equal(result.status, 125);
    assert.match(result.stderr, LINE);
    assert.match(result.stderr, /--run-as-root/);
  });

  test('abbreviated options are not accepted', () => {
    assert.equal(run(['--run-as', 'nobody', '--', '/bin/true']).status, 125);
  });

  test('an option given twice is bad usage', () => {
    const result = run(['--max-open-files', '10', '--max-open-files', '20', '--', '/bin/true']);
    assert.equal(result.status, 125);
    assert.match(result.stderr, /--max-open-files: given twice/);
  });

  test('PROGRAM must follow "--" and be absolute', () => {
    assert.equal(run(['/bin/true']).status, 125);
    assert.equal(run(['--']).status, 125);
    assert.equal(run(['--', 'true']).status, 125);
  });

  test('conflicting options name both', () => {
    const cases: [string[], string, string][] = [
      [['--max-memory', '64M'], '--max-memory', '--cgroup'],
      [['--max-cpu-percent', '50'], '--max-cpu-percent', '--cgroup'],
      [['--max-pids', '10'], '--max-pids', '--cgroup'],
      [['--bind-ro', '/etc/hosts'], '--bind-ro', '--chroot'],
      [['--run-as-group', 'nogroup'], '--run-as-group', '--run-as-user'],
      [['--seccomp', 'off', '--seccomp-action', 'errno'], '--seccomp-action', '--seccomp off'],
    ];
    for (const [args, a, b] of cases) {
      const result = run([...args, '--', '/bin/true']);
      assert.equal(result.status, 125, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, LINE);
      assert.ok(result.stderr.includes(a) && result.stderr.includes(b), `${args.join(' ')}: ${result.stderr}`);
    }
  });

  test('--chroot without --run-as-user is refused for root: root can escape a chroot', { skip: needsRoot }, () => {
    const result = run(['--chroot', jailDir(), '--', '/bin/true']);
    assert.equal(result.status, 125);
    assert.match(result.stderr, /--chroot without --run-as-user leaves root in the jail/);
  });

  test('a bad --run-as-user fails with 126 and one line naming the option', () => {
    for (const user of ['no-such-user-miwidothttp', '', 'root', '0', '4294967295']) {
      const result = run(['--run-as-user', user, '--', '/bin/true']);
      assert.equal(result.status, 126, `${user}: ${result.stderr}`);
      assert.match(result.stderr, LINE);
      assert.match(result.stderr, /--run-as-user/);
    }
  });

  test('a numeric uid needs --run-as-group: it is not looked up, so it has no primary group', () => {
    // 65534 is nobody, whose passwd entry names a primary group: a number is still not looked up.
    for (const uid of ['54321', '65534']) {
      const result = run(['--run-as-user', uid, '--', '/bin/true']);
      assert.equal(result.status, 126);
      assert.match(result.stderr, /--run-as-user \d+: a numeric uid has no primary group: give --run-as-group/);
    }
  });

  test('a missing --chroot directory fails with 126', { skip: needsRoot }, () => {
    const result = run(['--run-as-user', 'nobody', '--chroot', '/nonexistent/miwidothttp-jail', '--', '/node']);
    assert.equal(result.status, 126);
    assert.match(result.stderr, LINE);
    assert.match(result.stderr, /--chroot \/nonexistent\/miwidothttp-jail: No such file or directory/);
  });

  test('a --chroot that is a file fails with 126', { skip: needsRoot }, () => {
    const result = run(['--run-as-user', 'nobody', '--chroot', '/etc/hostname', '--', '/node']);
    assert.equal(result.status, 126);
    assert.match(result.stderr, /not a directory/);
  });

  test('--bind-ro refuses a DST with ".." and a missing SRC', { skip: needsRoot }, () => {
    const jail = jailDir();
    let result = run(['--run-as-user', 'nobody', '--chroot', jail, '--bind-ro', '/etc/hosts:/etc/../../x', '--', '/x']);
    assert.equal(result.status, 126);
    assert.match(result.stderr, /--bind-ro .*\.\./);
    result = run(['--run-as-user', 'nobody', '--chroot', jail, '--bind-ro', '/nonexistent-src', '--', '/x']);
    assert.equal(result.status, 126);
    assert.match(result.stderr, /--bind-ro \/nonexistent-src/);
  });

  test('bad limit values fail with 126', () => {
    for (const [option, value] of [
      ['--max-memory', '12Q'],
      ['--max-memory', '-1'],
      ['--max-cpu-percent', '0'],
      ['--max-pids', 'x'],
      ['--max-open-files', '2'],
    ] as const) {
      const args = option === '--max-open-files' ? [option, value] : ['--cgroup', 'miwidothttp-test/never', option, value];
      const result = run([...args, '--', '/bin/true']);
      assert.equal(result.status, 126, `${option} ${value}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`^miwidothttp-sandbox: ${option} `));
    }
  });

  test('a --seccomp FILE naming an unknown syscall fails with 126 naming the file and the line', () => {
    const dir = jailDir();
    const file = path.join(dir, 'list');
    writeFileSync(file, '# comment\nread\nnot_a_syscall\n');
    const result = run(['--seccomp', file, '--', '/bin/true']);
    assert.equal(result.status, 126);
    assert.ok(result.stderr.includes(file) && result.stderr.includes('not_a_syscall'), result.stderr);
  });

  test('--apparmor-profile fails with 126 when AppArmor is not enabled', () => {
    let enabled = '';
    try {
      enabled = readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8');
    } catch {
      /* not built in */
    }
    if (enabled.startsWith('Y')) return; // this kernel has AppArmor: nothing to refuse
    const result = run(['--apparmor-profile', 'miwidothttp-worker', '--', '/bin/true']);
    assert.equal(result.status, 126);
    assert.match(result.stderr, /--apparmor-profile miwidothttp-worker: apparmor is not enabled on this kernel/);
  });

  test('the preload shim fails closed: loaded outside the helper (no no_new_privs), one line and 126 before the program runs', () => {
    const result = spawnSync('/bin/echo', ['RAN'], {
      encoding: 'utf8',
      env: { PATH: '/usr/bin:/bin', LD_PRELOAD: path.join(ROOT, 'native-helpers/build/miwidothttp-sandbox-lock.so') },
    });
    assert.equal(result.status, 126);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^miwidothttp-sandbox: preload: exec lock: no_new_privs is not set[^\n]*\n$/);
  });

  test('a failed exec is 127', { skip: needsRoot }, () => {
    const result = run(['--run-as-user', 'nobody', '--chroot', jailDir(), '--', '/no/such/program']);
    assert.equal(result.status, 127);
    assert.match(result.stderr, /^miwidothttp-sandbox: exec \/no\/such\/program: No such file or directory\n$/);
  });
});

describe('inside the jail', { skip: needsRoot }, () => {
  test('node runs as nobody in the jail; /etc/shadow and /bin/sh are not there; the jail is read-only', () => {
    const jail = jailDir();
    const script = `
      const fs = require('node:fs');
      const out = { uid: process.getuid(), gid: process.getgid(), euid: process.geteuid(), groups: process.getgroups(), root: fs.readdirSync('/').sort(), cwd: process.cwd() };
      for (const file of ['/etc/shadow', '${path.join(ROOT, 'package.json')}']) { try { fs.readFileSync(file); out[file] = 'READ'; } catch (e) { out[file] = e.code; } }
      try { fs.writeFileSync('/written', 'x'); out.write = 'WROTE'; } catch (e) { out.write = e.code; }
      console.log(JSON.stringify(out));`;
    const result = run(jailedNode(jail, script, ['--seccomp', 'off']));
    assert.equal(result.status, 0, result.stderr);
    const out = JSON.parse(result.stdout) as Record<string, unknown>;
    assert.equal(out.uid, 65534);
    assert.equal(out.euid, 65534);
    assert.equal(out.gid, 65534);
    assert.deepEqual(out.groups, [65534]); // getgroups() reports the egid too; the supplementary list is empty (see /proc below)
    // What was bound in, and the helper's preload shim with the /etc/ld.so.preload naming it.
    assert.deepEqual(out.root, ['.miwidothttp-sandbox', 'etc', 'lib', 'lib64', 'node']);
    assert.equal(out.cwd, '/');
    assert.equal(out['/etc/shadow'], 'ENOENT');
    assert.equal(out[path.join(ROOT, 'package.json')], 'ENOENT');
    assert.equal(out.write, 'EROFS');
    // The operator's directory is untouched: the mountpoints were made in the overlay.
    assert.deepEqual(readdirSync(jail), []);
  });

  test('exec of /bin/sh fails: not in the jail (seccomp off) and no new process at all (seccomp on)', () => {
    const jail = jailDir();
    const script = `
      const cp = require('node:child_process');
      const sh = cp.spawnSync('/bin/sh', ['-c', 'id']);
      const self = cp.spawnSync('/node', ['-e', '0']);
      console.log(JSON.stringify({ sh: sh.error?.code ?? sh.status, self: self.error?.code ?? self.status }));`;
    let result = run(jailedNode(jail, script, ['--seccomp', 'off']));
    assert.equal(result.status, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout) as { sh: unknown }).sh, 'ENOENT');
    result = run(jailedNode(jail, script));
    assert.equal(result.status, 0, result.stderr);
    const out = JSON.parse(result.stdout) as { sh: unknown; self: unknown };
    assert.equal(out.sh, 'EPERM');
    assert.equal(out.self, 'EPERM', 'even a program inside the jail cannot be spawned');
  });

  test('the uid cannot be raised back: process.setuid(0) fails cleanly', () => {
    const script = `
      const out = {};
      for (const [name, fn] of [['setuid', () => process.setuid(0)], ['setgid', () => process.setgid(0)], ['seteuid', () => process.seteuid(0)], ['setgroups', () => process.setgroups([0])]]) {
        try { fn(); out[name] = 'CHANGED'; } catch (e) { out[name] = e.code ?? e.message; }
      }
      out.uid = process.getuid();
      console.log(JSON.stringify(out));`;
    for (const seccomp of ['default', 'off']) {
      const result = run(jailedNode(jailDir(), script, ['--seccomp', seccomp]));
      assert.equal(result.status, 0, result.stderr);
      const out = JSON.parse(result.stdout) as Record<string, string | number>;
      for (const name of ['setuid', 'setgid', 'seteuid', 'setgroups'])
        assert.match(String(out[name]), /EPERM/, `${seccomp}: ${name}: ${out[name]}`);
      assert.equal(out.uid, 65534);
    }
  });

  test('ptrace, mount and unshare kill the process with SIGSYS, even with --seccomp-action errno', () => {
    for (const action of ['kill', 'errno']) {
      for (const call of ['ptrace', 'mount']) {
        const result = run(jailedProbe(jailDir(), [call], ['--seccomp-action', action]));
        assert.equal(result.signal, 'SIGSYS', `${action} ${call}: ${result.status} ${result.stdout}${result.stderr}`);
      }
    }
  });

  test('threads yes, processes no: fork/clone EPERM, clone3 and io_uring ENOSYS', () => {
    const expected: Record<string, RegExp> = {
      fork: /fork: -1 Operation not permitted/,
      'clone-process': /clone-process: -1 Operation not permitted/,
      clone3: /clone3: -1 Function not implemented/,
      io_uring: /io_uring: -1 Function not implemented/,
      setuid: /setuid: -1 Operation not permitted/,
    };
    for (const [action, pattern] of Object.entries(expected)) {
      const result = run(jailedProbe(jailDir(), [action]));
      assert.equal(result.status, 0, `${action}: ${result.signal} ${result.stderr}`);
      assert.match(result.stdout, pattern);
    }
    // Node itself starts threads (clone with CLONE_THREAD) under the filter: a worker thread runs.
    const result = run(
      jailedNode(
        jailDir(),
        `const { Worker } = require('node:worker_threads'); new Worker('require("node:worker_threads").parentPort.postMessage(6*7)', { eval: true }).on('message', (m) => console.log(m));`,
      ),
    );
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), '42');
  });

  test('--seccomp-action: a syscall outside the list kills (default) or fails with EPERM (errno)', () => {
    // kill(2) is not in the measured list.
    const script = `try { process.kill(process.pid, 0); console.log('allowed'); } catch (e) { console.log(e.code); }`;
    let result = run(jailedNode(jailDir(), script));
    assert.equal(result.signal, 'SIGSYS', `${result.status} ${result.stdout}${result.stderr}`);
    result = run(jailedNode(jailDir(), script, ['--seccomp-action', 'errno']));
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'EPERM');
  });

  test('/proc/<pid>/status: uid/gid 65534 ×4, no groups, no capabilities, no_new_privs, seccomp filter', async () => {
    const jail = jailDir();
    const child = await startWaiting(jailedNode(jail, WAIT_SCRIPT, ['--max-open-files', '123']));
    try {
      const pid = child.pid!;
      assert.equal(statusField(pid, 'Uid'), '65534\t65534\t65534\t65534');
      assert.equal(statusField(pid, 'Gid'), '65534\t65534\t65534\t65534');
      assert.equal(statusField(pid, 'Groups'), '');
      for (const field of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
        assert.equal(statusField(pid, field), '0000000000000000', field);
      assert.equal(statusField(pid, 'NoNewPrivs'), '1');
      assert.equal(statusField(pid, 'Seccomp'), '2');
      const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
      assert.match(limits, /^Max open files\s+123\s+123\s+files/m);
      assert.match(limits, /^Max core file size\s+0\s+0\s+bytes/m);
      // The root of the worker is the configured directory, as seen from the host.
      assert.equal(readlinkSync(`/proc/${pid}/root`), jail);
    } finally {
      assert.equal(await finish(child), 0);
    }
  });

  test('numeric ids are used as given: no passwd entry needed, no supplementary groups even for a user who has some', async () => {
    const cases: { identity: string[]; uid: string; groups: string }[] = [
      { identity: ['--run-as-user', '54321', '--run-as-group', '54322'], uid: '54321', groups: '' },
    ];
    // A user with a supplementary group (Debian's caddy is in www-data): by name it gets it, by number it does not.
    const caddy = spawnSync('getent', ['passwd', 'caddy'], { encoding: 'utf8' }).stdout.split(':');
    const wwwData = spawnSync('getent', ['group', 'www-data'], { encoding: 'utf8' }).stdout.trim().split(':');
    if (caddy.length > 3 && wwwData[3]?.split(',').includes('caddy')) {
      cases.push({ identity: ['--run-as-user', 'caddy'], uid: caddy[2]!, groups: wwwData[2]! });
      cases.push({ identity: ['--run-as-user', caddy[2]!, '--run-as-group', caddy[3]!], uid: caddy[2]!, groups: '' });
    }
    for (const { identity, uid, groups } of cases) {
      const child = await startWaiting(jailedNode(jailDir(), WAIT_SCRIPT, [], identity));
      try {
        assert.equal(statusField(child.pid!, 'Uid'), `${uid}\t${uid}\t${uid}\t${uid}`, identity.join(' '));
        assert.equal(statusField(child.pid!, 'Groups'), groups, identity.join(' '));
      } finally {
        assert.equal(await finish(child), 0);
      }
    }
  });

  test('--seccomp off leaves Seccomp 0', async () => {
    const child = await startWaiting(jailedNode(jailDir(), WAIT_SCRIPT, ['--seccomp', 'off']));
    try {
      assert.equal(statusField(child.pid!, 'Seccomp'), '0');
      assert.equal(statusField(child.pid!, 'NoNewPrivs'), '1');
    } finally {
      await finish(child);
    }
  });

  test('only fds 0, 1, 2 and the kept ones reach the program', () => {
    // fds 3 and 4 are open in the helper (inherited pipes); only 4 is kept.
    const result = spawnSync(HELPER, jailedProbe(jailDir(), ['fds'], ['--keep-fd', '4']), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/bin:/bin' },
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'fds: 0 1 2 4');
  });

  test('--keep-fd of a closed fd fails with 126', () => {
    const result = run(['--keep-fd', '77', '--', '/bin/true']);
    assert.equal(result.status, 126);
    assert.match(result.stderr, /--keep-fd 77: fd is not open/);
  });

  test('--working-dir is inside the jail; a missing one fails with 126', () => {
    const jail = jailDir();
    let result = run(jailedNode(jail, 'console.log(process.cwd())', ['--working-dir', '/lib']));
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), '/lib');
    result = run(jailedNode(jail, 'console.log(process.cwd())', ['--working-dir', '/srv/none']));
    assert.equal(result.status, 126);
    assert.match(result.stderr, /--working-dir \/srv\/none: chdir \(inside the jail\): No such file or directory/);
  });

  test('a bind-ro mount is read-only and its SRC symlink is resolved', () => {
    const jail = jailDir();
    const data = jailDir();
    writeFileSync(path.join(data, 'file.txt'), 'hello from the host\n');
    const script = `
      const fs = require('node:fs');
      const out = { read: fs.readFileSync('/data/file.txt', 'utf8'), loader: fs.statSync('/lib64/ld-linux-x86-64.so.2').isFile() };
      try { fs.writeFileSync('/data/file.txt', 'x'); out.write = 'WROTE'; } catch (e) { out.write = e.code; }
      console.log(JSON.stringify(out));`;
    const result = run(jailedNode(jail, script, ['--bind-ro', `${data}:/data`, '--seccomp', 'off']));
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { read: 'hello from the host\n', loader: true, write: 'EROFS' });
    assert.equal(readFileSync(path.join(data, 'file.txt'), 'utf8'), 'hello from the host\n');
  });

  test('the IPC channel (NODE_CHANNEL_FD) survives the exec: child_process.fork through the helper', async () => {
    const dir = jailDir();
    const module = path.join(dir, 'child.cjs');
    writeFileSync(module, `process.send({ uid: process.getuid(), hello: 'from the sandbox' }); process.disconnect();`);
    chmodSync(module, 0o644);
    // Jailed like a worker: nobody may not be able to reach the host's path to node
    // (a checkout under a 0700 directory); inside the jail the module is /child.cjs.
    const child = fork('/child.cjs', [], {
      execPath: HELPER,
      execArgv: ['--run-as-user', 'nobody', '--chroot', dir, ...nodeBinds(), '--seccomp', 'default', '--', '/node'],
      env: { PATH: '/usr/bin:/bin' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const message = await new Promise<unknown>((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code, signal) => reject(new Error(`exited ${code ?? signal} before a message`)));
    });
    assert.deepEqual(message, { uid: 65534, hello: 'from the sandbox' });
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
    assert.equal(child.exitCode, 0);
  });

  test('the program dies with its parent (PR_SET_PDEATHSIG), even as nobody', async () => {
    const args = jailedNode(jailDir(), 'console.log("pid " + process.pid); setInterval(() => {}, 1000);');
    const parentScript = `const c = require('node:child_process').spawn(${JSON.stringify(HELPER)}, ${JSON.stringify(args)}, { stdio: ['ignore', 'inherit', 'inherit'] }); setInterval(() => {}, 1000);`;
    const parent = spawn(NODE, ['-e', parentScript], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    parent.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    parent.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const until = Date.now() + 20_000;
    while (!/pid \d+/.test(out) && Date.now() < until) await sleep(20);
    const pid = Number(/pid (\d+)/.exec(out)?.[1]);
    assert.ok(pid > 0, out);
    assert.ok(existsSync(`/proc/${pid}`));
    parent.kill('SIGKILL');
    const gone = (): boolean => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
      } catch {
        return true;
      }
    };
    const deadline = Date.now() + 5000;
    while (!gone() && Date.now() < deadline) await sleep(20);
    assert.ok(gone(), `pid ${pid} outlived its parent`);
  });
});

describe('cgroups', { skip: needsRoot }, () => {
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const parent = `miwidothttp-sandbox-test-${process.pid}`;
  let counter = 0;
  /** Every hierarchy root the helper may have used, for cleanup. */
  const roots = v2 ? ['/sys/fs/cgroup'] : ['/sys/fs/cgroup/memory', '/sys/fs/cgroup/cpu', '/sys/fs/cgroup/pids'];
  const made: string[] = [];

  after(() => {
    for (const root of roots) {
      for (const rel of made) {
        try {
          rmdirSync(path.join(root, rel));
        } catch {
          /* not created in this hierarchy */
        }
      }
      try {
        rmdirSync(path.join(root, parent));
      } catch {
        /* not created */
      }
    }
  });

  function cgroupName(): string {
    const rel = `${parent}/w-${++counter}`;
    made.push(rel);
    return rel;
  }

  test('the worker is in its own cgroup with the memory, cpu and pids limits written', async () => {
    const rel = cgroupName();
    const child = await startWaiting(
      jailedNode(jailDir(), WAIT_SCRIPT, ['--cgroup', rel, '--max-memory', '256M', '--max-cpu-percent', '50', '--max-pids', '64']),
    );
    try {
      const membership = readFileSync(`/proc/${child.pid}/cgroup`, 'utf8');
      const read = (root: string, file: string): string => readFileSync(path.join(root, rel, file), 'utf8').trim();
      if (v2) {
        assert.match(membership, new RegExp(`^0::/${rel}$`, 'm'));
        assert.equal(read('/sys/fs/cgroup', 'memory.max'), String(256 * 1024 * 1024));
        assert.equal(read('/sys/fs/cgroup', 'cpu.max'), '50000 100000');
        assert.equal(read('/sys/fs/cgroup', 'pids.max'), '64');
      } else {
        for (const controller of ['memory', 'cpu', 'pids']) {
          assert.match(membership, new RegExp(`^\\d+:([^:]*,)?${controller}(,[^:]*)?:/${rel}$`, 'm'), `${controller}: ${membership}`);
        }
        assert.equal(read('/sys/fs/cgroup/memory', 'memory.limit_in_bytes'), String(256 * 1024 * 1024));
        assert.equal(read('/sys/fs/cgroup/cpu', 'cpu.cfs_quota_us'), '50000');
        assert.equal(read('/sys/fs/cgroup/cpu', 'cpu.cfs_period_us'), '100000');
        assert.equal(read('/sys/fs/cgroup/pids', 'pids.max'), '64');
        if (existsSync(path.join('/sys/fs/cgroup/memory', rel, 'memory.memsw.limit_in_bytes'))) {
          assert.equal(read('/sys/fs/cgroup/memory', 'memory.memsw.limit_in_bytes'), String(256 * 1024 * 1024));
        }
      }
    } finally {
      assert.equal(await finish(child), 0);
    }
  });

  test('--cgroup alone attaches without limits', async () => {
    const rel = cgroupName();
    const child = await startWaiting(jailedNode(jailDir(), WAIT_SCRIPT, ['--cgroup', rel]));
    try {
      const membership = readFileSync(`/proc/${child.pid}/cgroup`, 'utf8');
      assert.ok(
        membership.split('\n').some((line) => line.endsWith(`:/${rel}`)),
        membership,
      );
    } finally {
      await finish(child);
    }
  });

  test('--max-pids is enforced: with pids.max = 1 a fork fails with EAGAIN', () => {
    // Seccomp off so that the cgroup, not the filter, is what refuses the fork.
    const result = run(jailedProbe(jailDir(), ['fork'], ['--cgroup', cgroupName(), '--max-pids', '1', '--seccomp', 'off']));
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /fork: -1 Resource temporarily unavailable/);
  });

  test('a bad --cgroup path fails with 126 before anything is created', () => {
    for (const rel of ['/abs', '../up', 'a//b', 'a/../b']) {
      const result = run(['--cgroup', rel, '--', '/bin/true']);
      assert.equal(result.status, 126, `${rel}: ${result.stderr}`);
      assert.match(result.stderr, /^miwidothttp-sandbox: --cgroup /);
    }
  });
});
