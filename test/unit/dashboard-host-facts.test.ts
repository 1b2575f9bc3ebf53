/**
 * What the master reads about a worker from /proc and the cgroup files
 * (src/master/dashboard/host-facts.ts): /proc/PID/status, and cgroup limits
 * on v1 hierarchies (this machine) and on v2 (files as the kernel writes them).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { CgroupMount } from '../../src/isolation/cgroups.js';
import { cgroupLimits, inspectProcess, parseProcStatus } from '../../src/master/dashboard/host-facts.js';

const STATUS = `Name:\tnode
Umask:\t0022
State:\tS (sleeping)
Uid:\t65534\t65534\t65534\t65534
Gid:\t65534\t65534\t65534\t65534
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
CapBnd:\t0000000000000000
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
`;

/** A file reader over a map of contents (missing files read as "", as readText does). */
const files =
  (contents: Record<string, string>) =>
  (file: string): string =>
    contents[file] ?? '';

const V1_MOUNTS: CgroupMount[] = [
  { version: 1, mountPoint: '/sys/fs/cgroup/memory', controllers: ['memory'] },
  { version: 1, mountPoint: '/sys/fs/cgroup/cpu,cpuacct', controllers: ['cpu', 'cpuacct'] },
  { version: 1, mountPoint: '/sys/fs/cgroup/pids', controllers: ['pids'] },
  { version: 2, mountPoint: '/sys/fs/cgroup/unified', controllers: [] },
];
const V2_MOUNTS: CgroupMount[] = [{ version: 2, mountPoint: '/sys/fs/cgroup', controllers: ['cpu', 'memory', 'pids', 'io'] }];

describe('/proc/PID/status', () => {
  it('reads the uids, gid, no_new_privs, seccomp mode and effective capabilities', () => {
    assert.deepEqual(parseProcStatus(STATUS), {
      uid: 65534,
      euid: 65534,
      gid: 65534,
      seccomp: 'filter',
      noNewPrivs: true,
      capEffective: '0000000000000000',
    });
  });

  it('tells a root process without filter or no_new_privs apart', () => {
    const root = STATUS.replaceAll('65534', '0').replace('NoNewPrivs:\t1', 'NoNewPrivs:\t0').replace('Seccomp:\t2', 'Seccomp:\t0');
    const facts = parseProcStatus(root.replace('CapEff:\t0000000000000000', 'CapEff:\t000001ffffffffff'));
    assert.equal(facts.uid, 0);
    assert.equal(facts.seccomp, 'off');
    assert.equal(facts.noNewPrivs, false);
    assert.equal(facts.capEffective, '000001ffffffffff');
  });

  it('answers null for what a gone process no longer shows', () => {
    assert.deepEqual(parseProcStatus(''), { uid: null, euid: null, gid: null, seccomp: null, noNewPrivs: null, capEffective: null });
  });

  it('reads a live process: this test runs as root, unfiltered, at /', () => {
    const facts = inspectProcess(process.pid);
    assert.equal(facts.uid, process.getuid!());
    assert.equal(facts.root, '/');
    assert.ok(facts.seccomp === 'off' || facts.seccomp === 'filter');
    assert.ok(facts.cgroup === null || facts.cgroup.version === 1 || facts.cgroup.version === 2);
  });
});

describe('cgroup limits', () => {
  const worker = 'miwidothttp.slice/worker-100-1';

  it('v1: memory, CPU quota and pids from each controller hierarchy', () => {
    const procCgroup = `12:pids:/${worker}\n5:cpu,cpuacct:/${worker}\n4:memory:/${worker}\n1:name=systemd:/user.slice\n0::/user.slice\n`;
    const read = files({
      [path.join('/sys/fs/cgroup/memory', worker, 'memory.limit_in_bytes')]: '536870912\n',
      [path.join('/sys/fs/cgroup/cpu,cpuacct', worker, 'cpu.cfs_quota_us')]: '50000\n',
      [path.join('/sys/fs/cgroup/cpu,cpuacct', worker, 'cpu.cfs_period_us')]: '100000\n',
      [path.join('/sys/fs/cgroup/pids', worker, 'pids.max')]: '512\n',
    });
    assert.deepEqual(cgroupLimits(procCgroup, V1_MOUNTS, read), {
      version: 1,
      path: worker,
      memoryMaxBytes: 536870912,
      cpuMaxPercent: 50,
      pidsMax: 512,
    });
  });

  it('v1: "no limit" as the kernel writes it is null', () => {
    const procCgroup = `12:pids:/${worker}\n5:cpu,cpuacct:/${worker}\n4:memory:/${worker}\n`;
    const read = files({
      [path.join('/sys/fs/cgroup/memory', worker, 'memory.limit_in_bytes')]: '9223372036854771712\n',
      [path.join('/sys/fs/cgroup/cpu,cpuacct', worker, 'cpu.cfs_quota_us')]: '-1\n',
      [path.join('/sys/fs/cgroup/cpu,cpuacct', worker, 'cpu.cfs_period_us')]: '100000\n',
      [path.join('/sys/fs/cgroup/pids', worker, 'pids.max')]: 'max\n',
    });
    assert.deepEqual(cgroupLimits(procCgroup, V1_MOUNTS, read), {
      version: 1,
      path: worker,
      memoryMaxBytes: null,
      cpuMaxPercent: null,
      pidsMax: null,
    });
  });

  it('v2: memory.max, cpu.max and pids.max of the unified hierarchy', () => {
    const read = files({
      [path.join('/sys/fs/cgroup', worker, 'memory.max')]: '268435456\n',
      [path.join('/sys/fs/cgroup', worker, 'cpu.max')]: '150000 100000\n',
      [path.join('/sys/fs/cgroup', worker, 'pids.max')]: '64\n',
    });
    assert.deepEqual(cgroupLimits(`0::/${worker}\n`, V2_MOUNTS, read), {
      version: 2,
      path: worker,
      memoryMaxBytes: 268435456,
      cpuMaxPercent: 150,
      pidsMax: 64,
    });
  });

  it('v2: "max" is no limit', () => {
    const read = files({
      [path.join('/sys/fs/cgroup', worker, 'memory.max')]: 'max\n',
      [path.join('/sys/fs/cgroup', worker, 'cpu.max')]: 'max 100000\n',
      [path.join('/sys/fs/cgroup', worker, 'pids.max')]: 'max\n',
    });
    assert.deepEqual(cgroupLimits(`0::/${worker}\n`, V2_MOUNTS, read), {
      version: 2,
      path: worker,
      memoryMaxBytes: null,
      cpuMaxPercent: null,
      pidsMax: null,
    });
  });

  it('no cgroup at all where neither hierarchy is mounted', () => {
    assert.equal(cgroupLimits(`0::/${worker}\n`, [], files({})), null);
    assert.equal(cgroupLimits('', V2_MOUNTS, files({})), null);
  });
});
