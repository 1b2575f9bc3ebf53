/**
 * What a compromised worker can do to its neighbours (issue 12), tried from
 * inside the real sandbox: the helper, its seccomp filters, the jail, an
 * unprivileged numeric uid shared with a sibling, and the preloaded shim.
 * The attacker is node (what a worker runs) where node can make the call,
 * and the C probe (native-helpers/tests/probe.c) for raw syscalls. Each
 * attack that must fail has a control beside it — the same attack with
 * `--seccomp off`, or against a process outside the sandbox — that
 * succeeds, so a passing test shows the rule, not a broken attack.
 * Needs root (as another user every test is skipped).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
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
  LISTENER,
  NATIVE,
  NODE,
  needsRoot,
  nodeBinds,
  numericIdentity,
  onCleanUp,
  processState,
  type Result,
  runHelper,
  STATIC_PROGRAM,
  startWaiting,
  WAIT_SCRIPT,
} from '../support/sandbox.js';

/** One uid for the worker and its sibling, with no passwd entry (as the master gives each slot). */
const WORKER_ID = 60000 + (process.pid % 5000);
const SAME_UID = numericIdentity(WORKER_ID);
const SECRET = `miwidothttp-secret-${process.pid}-${Date.now()}`;

before(buildNativeHelpers);
after(cleanUp);

/** A jailed node of WORKER_ID that waits (and echoes stdin): the sibling a compromised worker attacks. */
async function startSibling(extra: string[] = []): Promise<Awaited<ReturnType<typeof startWaiting>>> {
  const child = await startWaiting(jailedNode(jailDir(), WAIT_SCRIPT, extra, SAME_UID), {
    env: { PATH: '/usr/bin:/bin', MIWIDOTHTTP_TEST_SECRET: SECRET },
  });
  onCleanUp(() => child.kill('SIGKILL'));
  return child;
}

/** The sibling still runs and still answers. */
async function assertAnswers(sibling: Awaited<ReturnType<typeof startWaiting>>, what: string): Promise<void> {
  assert.notEqual(processState(sibling.pid!), 'T', `${what}: the sibling was stopped`);
  const token = `ping-${Math.random()}`;
  sibling.stdin!.write(`${token}\n`);
  const until = Date.now() + 20_000;
  while (!sibling.output().includes(`echo:${token}`)) {
    assert.ok(sibling.exitCode === null && sibling.signalCode === null, `${what}: the sibling died (${sibling.signalCode})`);
    assert.ok(Date.now() < until, `${what}: the sibling does not answer`);
    await sleep(20);
  }
}

function probe(action: (string | number)[], extra: string[] = []): Result {
  return runHelper(
    jailedProbe(
      jailDir(),
      action.map((part) => String(part)),
      extra,
      SAME_UID,
    ),
  );
}

/** A --seccomp FILE: the built-in list plus `names` (a list that "allows" them). */
function listWith(names: string[]): string {
  const file = path.join(jailDir(), 'allowed_syscalls');
  writeFileSync(file, `${readFileSync(path.join(NATIVE, 'seccomp-default.list'), 'utf8')}\n${names.join('\n')}\n`);
  return file;
}

/** Reads /proc/<pid>/{environ,maps,mem} and says what it got: READ, SECRET (environ holds it) or the error code. */
const READER_SCRIPT = `
  const fs = require('node:fs'); const pid = process.argv[1]; const out = {};
  try { out.environ = fs.readFileSync('/proc/' + pid + '/environ', 'latin1').includes(${JSON.stringify(SECRET)}) ? 'SECRET' : 'READ'; } catch (e) { out.environ = e.code; }
  let start = null;
  try { const line = fs.readFileSync('/proc/' + pid + '/maps', 'latin1').split('\\n').find((l) => / r/.test(l)); start = parseInt(line, 16); out.maps = 'READ'; } catch (e) { out.maps = e.code; }
  try { const fd = fs.openSync('/proc/' + pid + '/mem', 'r'); out.mem = start === null ? 'OPENED' : fs.readSync(fd, Buffer.alloc(16), 0, 16, start) === 16 ? 'READ' : 'SHORT'; } catch (e) { out.mem = e.code; }
  console.log(JSON.stringify(out));`;

interface ReadResult {
  environ: string;
  maps: string;
  mem: string;
}

/** The reader as a plain process of WORKER_ID outside the sandbox (another daemon sharing the uid). */
function readAsSameUidOutside(pid: number): ReadResult {
  const result = spawnSync(NODE, ['-e', READER_SCRIPT, String(pid)], { uid: WORKER_ID, gid: WORKER_ID, encoding: 'utf8', env: {} });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as ReadResult;
}

/** The reader as a sandboxed worker of WORKER_ID with the host's /proc bound into its jail. */
function readAsSameUidInside(pid: number): ReadResult {
  const result = runHelper([
    ...SAME_UID,
    '--chroot',
    jailDir(),
    ...nodeBinds(),
    '--bind-ro',
    '/proc:/proc',
    '--',
    '/node',
    '-e',
    READER_SCRIPT,
    String(pid),
  ]);
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as ReadResult;
}

/** A process of WORKER_ID outside the sandbox, dumpable as every process is after exec: the control. */
function startPlainProcess(): number {
  const child = spawn('/bin/sleep', ['600'], { uid: WORKER_ID, gid: WORKER_ID, env: { MIWIDOTHTTP_TEST_SECRET: SECRET }, stdio: 'ignore' });
  onCleanUp(() => child.kill('SIGKILL'));
  return child.pid!;
}

/** TCP sockets in LISTEN state (0A) owned by `uid`, from the host's /proc/net/tcp and tcp6. */
function listeningPortsOf(uid: number): number[] {
  const ports: number[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === '0A' && Number(fields[7]) === uid) ports.push(Number.parseInt(fields[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

async function fetchText(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(20_000) });
  return response.text();
}

describe('a compromised worker against the workers beside it', { skip: needsRoot }, () => {
  test("another process of the worker's uid cannot read its memory or environment: it is non-dumpable after exec", async () => {
    const worker = await startSibling();
    const control = startPlainProcess();
    // Controls: both readers can read a dumpable process of the same uid, secret included.
    assert.deepEqual(readAsSameUidOutside(control), { environ: 'SECRET', maps: 'READ', mem: 'READ' });
    assert.deepEqual(readAsSameUidInside(control), { environ: 'SECRET', maps: 'READ', mem: 'READ' });
    // The worker: nothing, from outside the sandbox or from a sandboxed sibling.
    const refused = { environ: 'EACCES', maps: 'EACCES', mem: 'EACCES' };
    assert.deepEqual(readAsSameUidOutside(worker.pid!), refused);
    assert.deepEqual(readAsSameUidInside(worker.pid!), refused);
    // A non-dumpable process's /proc files belong to root (proc(5), "/proc/pid").
    assert.equal(statSync(`/proc/${worker.pid}/environ`).uid, 0);
    assert.equal(statSync(`/proc/${control}/environ`).uid, WORKER_ID);
    await assertAnswers(worker, 'after the reads');
    assert.equal(await finish(worker), 0);
  });

  test('the worker reads PR_GET_DUMPABLE = 0, with the filter and with --seccomp off', () => {
    for (const extra of [[], ['--seccomp', 'off']]) {
      const result = probe(['dumpable'], extra);
      assert.equal(result.status, 0, `${extra.join(' ')}: ${result.signal} ${result.stderr}`);
      assert.equal(result.stdout, 'dumpable: 0\n', extra.join(' '));
    }
  });

  test('without a jail the shim comes through LD_PRELOAD, and is gone from the environment node sees', async () => {
    const script =
      'console.log(JSON.stringify({ preload: process.env.LD_PRELOAD ?? null })); process.stdin.resume(); process.stdin.on("end", () => process.exit(0));';
    const worker = await startWaiting([...SAME_UID, '--', NODE, '-e', script], { marker: 'preload' });
    onCleanUp(() => worker.kill('SIGKILL'));
    assert.deepEqual(JSON.parse(worker.output()), { preload: null });
    assert.deepEqual(readAsSameUidOutside(worker.pid!), { environ: 'EACCES', maps: 'EACCES', mem: 'EACCES' });
    assert.equal(await finish(worker), 0);
  });

  test('signals to a sibling of the same uid are refused, by every route, and the sibling keeps running', async () => {
    const sibling = await startSibling();
    const pid = sibling.pid!;
    const SIGSTOP = 19;
    // kill(2) is not in the built-in list: the attacker dies.
    const killed = probe(['kill', pid, SIGSTOP]);
    assert.equal(killed.signal, 'SIGSYS', `kill: ${killed.status} ${killed.stdout}`);
    await assertAnswers(sibling, 'kill');
    // Every other route, with the built-in list: refused with EPERM.
    const routes: (string | number)[][] = [
      ['tgkill', pid, pid, SIGSTOP],
      ['tgkill', `4294967296+${pid}`, pid, SIGSTOP],
      ['tkill', pid, SIGSTOP],
      ['sigqueue', pid, SIGSTOP],
      ['tgsigqueue', pid, SIGSTOP],
      ['pidfd_open', pid],
      ['pidfd_send_signal', SIGSTOP],
      ['pidfd_getfd'],
      ['setown', pid, SIGSTOP],
      ['fiosetown', pid],
    ];
    for (const route of routes) {
      const result = probe(route);
      assert.equal(result.status, 0, `${route.join(' ')}: ${result.signal} ${result.stderr}`);
      assert.equal(result.stdout, `${route[0]}: -1 Operation not permitted\n`, route.join(' '));
      await assertAnswers(sibling, route.join(' '));
    }
    // A list that names kill and the rest cannot loosen the fixed rules.
    const permissive = [
      '--seccomp',
      listWith(['kill', 'tkill', 'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'pidfd_open', 'pidfd_send_signal', 'pidfd_getfd']),
    ];
    for (const route of [
      ['kill', pid, SIGSTOP],
      ['kill', `4294967296+${pid}`, SIGSTOP],
      ['kill', 0, SIGSTOP],
      ['kill', -1, SIGSTOP],
      ...routes,
    ]) {
      const result = probe(route, permissive);
      assert.equal(result.status, 0, `${route.join(' ')} (list allows it): ${result.signal} ${result.stderr}`);
      assert.equal(result.stdout, `${route[0]}: -1 Operation not permitted\n`, `${route.join(' ')} (list allows it)`);
      await assertAnswers(sibling, `${route.join(' ')} (list allows it)`);
    }
    // Its own pid stays reachable when the list allows kill (and glibc's abort() uses tgkill, see below).
    assert.equal(probe(['kill', 'self', 0], permissive).stdout, 'kill: 0\n');
    assert.equal(probe(['tgkill', 'self', 'self', 0]).stdout, 'tgkill: 0\n');

    // Control: without the filter the same uid stops the sibling.
    const unfiltered = probe(['kill', pid, SIGSTOP], ['--seccomp', 'off']);
    assert.equal(unfiltered.stdout, 'kill: 0\n');
    const until = Date.now() + 20_000;
    while (processState(pid) !== 'T' && Date.now() < until) await sleep(20);
    assert.equal(processState(pid), 'T', 'the control could not stop the sibling');
    process.kill(pid, 'SIGCONT');
    await assertAnswers(sibling, 'after SIGCONT');
    assert.equal(await finish(sibling), 0);
  });

  test("prlimit64 cannot change a sibling's limits", () => {
    const target = startPlainProcess();
    const before = readFileSync(`/proc/${target}/limits`, 'utf8');
    assert.equal(probe(['prlimit', target, 5]).stdout, 'prlimit: -1 Operation not permitted\n');
    assert.equal(probe(['prlimit', `4294967296+${target}`, 5]).stdout, 'prlimit: -1 Operation not permitted\n');
    assert.equal(readFileSync(`/proc/${target}/limits`, 'utf8'), before);
    assert.equal(probe(['prlimit', 0, 64]).stdout, 'prlimit: 0\n', 'its own limits (pid 0) stay settable');
    // Control: without the filter the same uid can.
    assert.equal(probe(['prlimit', target, 5], ['--seccomp', 'off']).stdout, 'prlimit: 0\n');
    assert.match(readFileSync(`/proc/${target}/limits`, 'utf8'), /^Max open files\s+5\s+5\s+files/m);
  });

  test('the worker cannot take back its parent death signal (it dies with the master)', () => {
    assert.equal(probe(['pdeathsig']).stdout, 'pdeathsig: -1 Operation not permitted\n');
    assert.equal(probe(['pdeathsig'], ['--seccomp', 'off']).stdout, 'pdeathsig: 0\n', 'control');
  });
});

describe('a compromised worker and the network', { skip: needsRoot }, () => {
  test('socket(): AF_UNIX, AF_INET and AF_INET6 only; netlink, packet, vsock, alg fail with EAFNOSUPPORT', () => {
    const refused: [string, (string | number)[]][] = [
      ['netlink sock_diag', [16, 3, 4]],
      ['netlink route', [16, 3, 0]],
      ['netlink with high bits', ['4294967296+16', 3, 4]],
      ['packet', [17, 3, 0]],
      ['vsock', [40, 1, 0]],
      ['alg', [38, 5, 0]],
    ];
    for (const [what, args] of refused) {
      const result = probe(['socket', ...args]);
      assert.equal(result.stdout, 'socket: -1 Address family not supported by protocol\n', what);
    }
    for (const [what, args] of [
      ['unix', [1, 1, 0]],
      ['inet tcp', [2, 1, 0]],
      ['inet udp', [2, 2, 0]],
      ['inet6 tcp', [10, 1, 0]],
    ] as const) {
      assert.match(probe(['socket', ...args]).stdout, /^socket: \d+\n$/, what);
    }
    assert.equal(probe(['socketpair', 2]).stdout, 'socketpair: -1 Address family not supported by protocol\n');
    assert.equal(probe(['socketpair', 1]).stdout, 'socketpair: 0\n');
    // Controls: this kernel gives netlink (and vsock, when it has it) to an unprivileged process.
    assert.match(probe(['socket', 16, 3, 4], ['--seccomp', 'off']).stdout, /^socket: \d+\n$/, 'netlink control');
    if (readFileSync('/proc/net/protocols', 'utf8').includes('AF_VSOCK'))
      assert.match(probe(['socket', 40, 1, 0], ['--seccomp', 'off']).stdout, /^socket: \d+\n$/, 'vsock control');
  });

  test("no program on a socket: the listening group's spreading program cannot be replaced or removed, no drop-all filter locked", () => {
    // SOL_SOCKET options (asm-generic/socket.h): SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_LOCK_FILTER, SO_ATTACH_BPF,
    // SO_ATTACH_REUSEPORT_CBPF, SO_ATTACH_REUSEPORT_EBPF, SO_DETACH_REUSEPORT_BPF.
    for (const optname of [26, 27, 44, 50, 51, 52, 68]) {
      assert.equal(probe(['sockopt', optname]).stdout, 'sockopt: -1 Operation not permitted\n', `option ${optname}`);
      // Control: unfiltered, the kernel answers (0, or EBADF / ENOENT for no program): the call got through.
      // (SO_ATTACH_FILTER is left out: this kernel refuses it to an unprivileged process by itself.)
      if (optname !== 26)
        assert.doesNotMatch(
          probe(['sockopt', optname], ['--seccomp', 'off']).stdout,
          /Operation not permitted/,
          `option ${optname} control`,
        );
    }
    // Other socket options still work (SO_REUSEPORT, set by the probe first, and the ones node sets).
    assert.match(probe(['sockopt', 15]).stdout, /^sockopt: 0\n$/);
  });

  test('bind() is refused, and listen() on a socket of its own opens no port', async () => {
    assert.equal(probe(['bind']).stdout, 'bind: -1 Operation not permitted\n');
    const held = await startWaiting(jailedProbe(jailDir(), ['listen-new'], [], SAME_UID), { marker: 'listen-new' });
    onCleanUp(() => held.kill('SIGKILL'));
    assert.equal(held.output(), 'listen-new: 0 port 0 accept Invalid argument\n');
    assert.deepEqual(listeningPortsOf(WORKER_ID), []);
    await finish(held);
    // Control: unfiltered, the same listen() binds a port of the kernel's choosing and listens on it.
    const control = await startWaiting(jailedProbe(jailDir(), ['listen-new'], ['--seccomp', 'off'], SAME_UID), { marker: 'listen-new' });
    onCleanUp(() => control.kill('SIGKILL'));
    const port = Number(/port (\d+)/.exec(control.output())?.[1]);
    assert.ok(port > 0, control.output());
    assert.deepEqual(listeningPortsOf(WORKER_ID), [port]);
    await finish(control);
  });

  test('node serves on the listening socket the caller passed at fd 3; a port of its own fails', async () => {
    const script = `
      const http = require('node:http'), net = require('node:net');
      net.createServer().listen(0, '127.0.0.1').on('error', (e) => {
        http.createServer((q, r) => r.end('served from the jail\\n')).listen({ fd: 3 }, () => console.log('ready ' + e.code));
      });
      process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`;
    const worker = await startWaiting(['--', HELPER, ...jailedNode(jailDir(), script, ['--keep-fd', '3'], SAME_UID)], {
      command: LISTENER,
    });
    onCleanUp(() => worker.kill('SIGKILL'));
    assert.match(worker.output(), /ready EPERM/, 'its own port: bind is refused');
    const port = Number(/^port (\d+)$/m.exec(worker.output())?.[1]);
    assert.equal(await fetchText(port), 'served from the jail\n');
    assert.deepEqual(listeningPortsOf(WORKER_ID), [], "the passed socket is the caller's (uid 0), and there is no other");
    await finish(worker);
  });

  test('a passed socket that only the helper makes listen (--listen-fd) serves; one that does not listen never will', async () => {
    const script = `require('node:http').createServer((q, r) => r.end('ok\\n')).listen({ fd: 3 }, () => console.log('ready')); process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`;
    const listening = await startWaiting(['--bound-only', '--', HELPER, ...jailedNode(jailDir(), script, ['--listen-fd', '3'], SAME_UID)], {
      command: LISTENER,
    });
    onCleanUp(() => listening.kill('SIGKILL'));
    assert.equal(await fetchText(Number(/^port (\d+)$/m.exec(listening.output())?.[1])), 'ok\n');
    await finish(listening);
    // Bound but not listening, and only kept: node's listen() "succeeds" (answered 0), the socket never listens.
    const bound = await startWaiting(['--bound-only', '--', HELPER, ...jailedNode(jailDir(), script, ['--keep-fd', '3'], SAME_UID)], {
      command: LISTENER,
    });
    onCleanUp(() => bound.kill('SIGKILL'));
    const port = Number(/^port (\d+)$/m.exec(bound.output())?.[1]);
    await assert.rejects(fetchText(port), (error: Error & { cause?: { code?: string } }) => error.cause?.code === 'ECONNREFUSED');
    await finish(bound);
  });
});

describe('a compromised worker and exec', { skip: needsRoot }, () => {
  const EXEC_SCRIPT = 'process.execve("/node", ["/node", "-e", "console.log(\\"EXECUTED\\")"]);';

  test('execve after start is refused and runs nothing; abort() still works', () => {
    const result = runHelper(jailedNode(jailDir(), EXEC_SCRIPT, [], SAME_UID));
    // node aborts when execve fails: SIGABRT through tgkill to itself.
    assert.equal(result.signal, 'SIGABRT', `${result.status} ${result.stderr}`);
    assert.match(result.stderr, /process\.execve failed with error code EPERM/);
    assert.doesNotMatch(result.stdout, /EXECUTED/);
    // Even with a list that names execve and execveat.
    const listed = runHelper(jailedNode(jailDir(), EXEC_SCRIPT, ['--seccomp', listWith(['execve', 'execveat'])], SAME_UID));
    assert.match(listed.stderr, /process\.execve failed with error code EPERM/);
    assert.doesNotMatch(listed.stdout, /EXECUTED/);
    // The probe's own execve of a program in its jail.
    assert.equal(probe(['exec', '/probe', 'dumpable']).stdout, 'exec: -1 Operation not permitted\n');
    // Control: without a filter the exec happens.
    const control = runHelper(jailedNode(jailDir(), EXEC_SCRIPT, ['--seccomp', 'off'], SAME_UID));
    assert.equal(control.status, 0, control.stderr);
    assert.equal(control.stdout, 'EXECUTED\n');
  });
});

describe('--check', { skip: needsRoot }, () => {
  const cgroupParent = `miwidothttp-sandbox-check-${process.pid}`;
  const hierarchies = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => / - cgroup2? /.test(line))
    .map((line) => line.split(' ')[4]!);
  const cgroupDirs = (): string[] => hierarchies.map((root) => path.join(root, cgroupParent)).filter((dir) => existsSync(dir));
  const removeCgroups = (): void => {
    for (const dir of cgroupDirs()) {
      for (const leaf of readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()))
        rmdirSync(path.join(dir, leaf.name));
      rmdirSync(dir);
    }
  };
  after(removeCgroups);

  /** Pids whose command line contains `marker`. */
  const processesWith = (marker: string): string[] =>
    readdirSync('/proc').filter((pid) => {
      try {
        return /^\d+$/.test(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
      } catch {
        return false; // gone meanwhile
      }
    });

  function goodOptions(jail: string): string[] {
    return [
      ...SAME_UID,
      '--chroot',
      jail,
      ...nodeBinds(),
      '--working-dir',
      '/lib',
      '--cgroup',
      `${cgroupParent}/w-1`,
      '--max-memory',
      '256M',
      '--max-cpu-percent',
      '50',
      '--max-pids',
      '64',
      '--max-open-files',
      '4096',
      '--seccomp',
      'default',
      '--seccomp-action',
      'kill',
    ];
  }

  test('a good set of options passes and changes nothing: no cgroup, no mount, no process', () => {
    const jail = jailDir();
    const marker = `miwidothttp-check-marker-${process.pid}`;
    for (const args of [
      ['--check', ...goodOptions(jail), '--', '/node', '-e', `console.log("${marker}")`],
      ['--check', ...goodOptions(jail)],
      ['--check', ...goodOptions(jail).map((arg) => (arg === 'kill' ? 'errno' : arg)), '--'],
    ]) {
      const result = runHelper(args);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, '');
      assert.equal(result.stderr, '');
    }
    assert.deepEqual(cgroupDirs(), [], 'no cgroup was created');
    assert.deepEqual(readdirSync(jail), [], 'nothing was made in the jail');
    assert.deepEqual(processesWith(marker), [], 'PROGRAM was not run');
    // What --check accepts, a real run applies.
    const real = runHelper([...goodOptions(jail), '--', '/node', '-e', `console.log("${marker}")`]);
    assert.equal(real.status, 0, real.stderr);
    assert.equal(real.stdout, `${marker}\n`);
    removeCgroups();
  });

  test('each bad setting: --check fails with the exit code and the line a real run prints, naming the option', () => {
    const jail = jailDir();
    const notRoots = jailDir();
    chownSync(notRoots, 1234, 1234);
    const groupWritable = jailDir();
    chmodSync(groupWritable, 0o775);
    const openParent = mkdtempSync(path.join(tmpdir(), 'miwidothttp-open-'));
    onCleanUp(() => spawnSync('rm', ['-rf', openParent]));
    chmodSync(openParent, 0o777);
    const underOpenParent = path.join(openParent, 'jail');
    mkdirSync(underOpenParent, { mode: 0o755 });
    const badList = path.join(jailDir(), 'list');
    writeFileSync(badList, 'read\nnot_a_syscall\n');
    const notExecutable = path.join(jailDir(), 'data');
    writeFileSync(notExecutable, 'not a program\n', { mode: 0o644 });
    const jailed = (extra: string[], program = ['/node']): string[] => [
      ...SAME_UID,
      '--chroot',
      jail,
      ...nodeBinds(),
      ...extra,
      '--',
      ...program,
    ];

    const cases: { what: string; args: string[]; code: number; names: RegExp; env?: NodeJS.ProcessEnv; pipeFd3?: boolean }[] = [
      { what: 'unknown user', args: ['--run-as-user', 'no-such-user-miwidothttp', '--', '/node'], code: 126, names: /--run-as-user/ },
      {
        what: 'numeric uid without a group',
        args: ['--run-as-user', String(WORKER_ID), '--', '/node'],
        code: 126,
        names: /--run-as-group/,
      },
      {
        what: 'unknown group',
        args: ['--run-as-user', String(WORKER_ID), '--run-as-group', 'no-such-group-miwidothttp', '--', '/node'],
        code: 126,
        names: /--run-as-group/,
      },
      { what: 'gid 0', args: ['--run-as-user', String(WORKER_ID), '--run-as-group', '0', '--', '/node'], code: 126, names: /--run-as-/ },
      {
        what: 'missing jail',
        args: [...SAME_UID, '--chroot', '/nonexistent/miwidothttp-jail', '--', '/node'],
        code: 126,
        names: /--chroot/,
      },
      {
        what: 'jail not owned by root',
        args: [...SAME_UID, '--chroot', notRoots, '--', '/node'],
        code: 126,
        names: /--chroot .*owned by uid 1234/,
      },
      {
        what: 'group-writable jail',
        args: [...SAME_UID, '--chroot', groupWritable, '--', '/node'],
        code: 126,
        names: /--chroot .*writable/,
      },
      {
        what: 'jail below a writable directory',
        args: [...SAME_UID, '--chroot', underOpenParent, '--', '/node'],
        code: 126,
        names: /--chroot .*above the jail/,
      },
      { what: 'missing bind source', args: jailed(['--bind-ro', '/nonexistent-miwidothttp-src']), code: 126, names: /--bind-ro/ },
      {
        what: 'reserved bind target',
        args: jailed(['--bind-ro', '/etc/hosts:/etc/ld.so.preload']),
        code: 126,
        names: /--bind-ro .*reserved/,
      },
      { what: 'bad seccomp list', args: jailed(['--seccomp', badList]), code: 126, names: /--seccomp .*not_a_syscall/ },
      { what: 'closed kept fd', args: jailed(['--keep-fd', '77']), code: 126, names: /--keep-fd 77/ },
      { what: 'listen fd that is no socket', args: jailed(['--listen-fd', '3']), code: 126, names: /--listen-fd 3/, pipeFd3: true },
      { what: 'bad cgroup path', args: jailed(['--cgroup', '../up']), code: 126, names: /--cgroup/ },
      {
        what: 'cgroup path through a file',
        args: jailed(['--cgroup', 'cgroup.procs/w-1']),
        code: 126,
        names: /--cgroup cgroup\.procs\/w-1/,
      },
      { what: 'too many open files', args: jailed(['--max-open-files', '999999999']), code: 126, names: /--max-open-files/ },
      { what: 'AppArmor profile', args: jailed(['--apparmor-profile', 'miwidothttp-none']), code: 126, names: /--apparmor-profile/ },
      {
        what: 'working dir missing in the jail',
        args: jailed(['--working-dir', '/srv/none']),
        code: 126,
        names: /--working-dir \/srv\/none/,
      },
      {
        what: 'program missing in the jail',
        args: jailed([], ['/no/such/program']),
        code: 127,
        names: /exec \/no\/such\/program: No such file/,
      },
      {
        what: 'program not executable',
        args: jailed(['--bind-ro', `${notExecutable}:/data`], ['/data']),
        code: 127,
        names: /exec \/data: Permission denied/,
      },
      {
        what: 'static program',
        args: jailed(['--bind-ro', `${STATIC_PROGRAM}:/static`], ['/static']),
        code: 126,
        names: /exec \/static: statically linked/,
      },
      {
        what: 'LD_PRELOAD set',
        args: jailed([]),
        code: 126,
        names: /LD_PRELOAD/,
        env: { PATH: '/usr/bin:/bin', LD_PRELOAD: '/lib/x86_64-linux-gnu/libm.so.6' },
      },
      { what: 'unknown option', args: ['--no-such-option', '--', '/node'], code: 125, names: /--no-such-option/ },
    ];
    for (const { what, args, code, names, env, pipeFd3 } of cases) {
      const run = (extra: string[]): Result => {
        const result = spawnSync(HELPER, [...extra, ...args], {
          encoding: 'utf8',
          timeout: 60_000,
          env: env ?? { PATH: '/usr/bin:/bin' },
          stdio: pipeFd3 ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
        });
        return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
      };
      const checked = run(['--check']);
      const real = run([]);
      assert.equal(checked.status, code, `${what}: ${checked.stderr}`);
      assert.match(checked.stderr, LINE, what);
      assert.match(checked.stderr, names, what);
      assert.deepEqual(
        { status: checked.status, stderr: checked.stderr },
        { status: real.status, stderr: real.stderr },
        `${what}: --check and a real run differ`,
      );
    }
    assert.deepEqual(cgroupDirs(), [], 'no cgroup was created');
  });
});
