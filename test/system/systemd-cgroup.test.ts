/**
 * Under systemd (Delegate=yes) worker cgroups go inside the service's own
 * cgroup, not at the hierarchy root. No systemd runs as PID 1 here: the test
 * does what systemd does for a service — puts the process in
 * <slice>/<unit>.service in each hierarchy and sets INVOCATION_ID — and
 * checks where the workers land, that reload and stop clean up, and that
 * nothing is left. This host has cgroup v1 hierarchies; the v2 detection is
 * checked on /proc/self/cgroup text.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cgroupMounts, delegatedCgroup } from '../../src/isolation/cgroups.js';
import { BIN, cli, request, TestServer, waitFor } from '../support/harness.js';

describe('the cgroup systemd delegated to the service', () => {
  it('is read from the memory hierarchy on v1 and the unified line on v2, only when systemd started us', () => {
    const v1 =
      '12:pids:/system.slice/miwidothttp.service\n4:memory:/system.slice/miwidothttp.service\n0::/system.slice/miwidothttp.service\n';
    const alone = (): boolean => false;
    assert.equal(delegatedCgroup({ INVOCATION_ID: 'x' }, v1, false, alone), 'system.slice/miwidothttp.service');
    assert.equal(delegatedCgroup({}, v1, false, alone), null, 'not started by systemd');
    assert.equal(
      delegatedCgroup({ INVOCATION_ID: 'x' }, '0::/system.slice/miwidothttp.service/master\n', true, alone),
      'system.slice/miwidothttp.service',
      'the master already moved into its leaf',
    );
    assert.equal(
      delegatedCgroup({ INVOCATION_ID: 'x' }, '0::/user.slice/user-0.slice/session-1.scope\n', true, alone),
      null,
      'a login session is not a service',
    );
    assert.equal(delegatedCgroup({ INVOCATION_ID: 'x' }, '4:cpuset,memory:/a.slice/b.service\n', false, alone), 'a.slice/b.service');
    assert.equal(
      delegatedCgroup({ INVOCATION_ID: 'x' }, v1, false, () => true),
      null,
      'started from inside another service (INVOCATION_ID inherited): its cgroup is not ours',
    );
  });
});

describe('worker cgroups under a delegated service cgroup (v1 hierarchies)', () => {
  const server = new TestServer();
  const service = `miwidothttp-test-${process.pid}.slice/miwidothttp.service`;
  const hierarchies = cgroupMounts().filter(
    (mount) => mount.version === 1 && ['memory', 'cpu', 'pids'].some((c) => mount.controllers.includes(c)),
  );

  before(async () => {
    for (const mount of hierarchies) mkdirSync(path.join(mount.mountPoint, service), { recursive: true });
    // What systemd does before exec: the process joins the unit's cgroup in every hierarchy.
    const enter = hierarchies.map((mount) => `echo $$ > ${path.join(mount.mountPoint, service, 'cgroup.procs')}`).join(' && ');
    server.launch = (argv) => ({
      file: '/bin/sh',
      args: ['-c', `${enter} && exec "$0" "$@"`, BIN, ...argv],
      env: { ...process.env, INVOCATION_ID: 'd00dfeed' },
    });
    await server.start(`[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`);
  });

  after(async () => {
    await server.stop();
    for (const mount of hierarchies) {
      for (const dir of [path.join(mount.mountPoint, service), path.join(mount.mountPoint, path.dirname(service))]) {
        try {
          rmdirSync(dir);
        } catch {
          // Already gone.
        }
      }
    }
  });

  const memoryCgroupOf = (pid: number): string =>
    readFileSync(`/proc/${pid}/cgroup`, 'utf8').match(/^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/m)![1]!;

  it('puts each worker in <service>/worker-<master pid>-<n>, with its limits', async () => {
    const master = server.masterPid();
    assert.equal(memoryCgroupOf(master), `/${service}`);
    const workers = server.status().workers;
    assert.equal(workers.length, 2);
    for (const worker of workers) {
      const own = memoryCgroupOf(worker.pid!);
      assert.match(own, new RegExp(`^/${service.replace(/[.]/g, '\\.')}/worker-${master}-\\d+$`));
      const memory = hierarchies.find((mount) => mount.controllers.includes('memory'))!;
      assert.equal(Number(readFileSync(path.join(memory.mountPoint, own, 'memory.limit_in_bytes'), 'utf8')), 512 * 1024 * 1024);
    }
    assert.equal((await request(server.port, { path: '/miwidothttp.toml' })).status, 200);
    assert.match(server.output, /worker cgroups go under the cgroup systemd delegated to the service/);
  });

  it('reload replaces them inside the service cgroup and removes the old ones', async () => {
    const before = server.status().workers.map((worker) => memoryCgroupOf(worker.pid!));
    assert.equal(cli(['reload', '-c', server.configFile]).status, 0);
    const memory = hierarchies.find((mount) => mount.controllers.includes('memory'))!;
    await waitFor('old worker cgroups removed', () => before.every((group) => !existsSync(path.join(memory.mountPoint, group))), 15_000);
    for (const worker of server.status().workers) assert.ok(memoryCgroupOf(worker.pid!).startsWith(`/${service}/worker-`));
  });

  it('leaves no worker cgroup in the service cgroup after stop', async () => {
    await server.halt();
    for (const mount of hierarchies) {
      const dir = path.join(mount.mountPoint, service);
      await waitFor(`no worker cgroup left in ${dir}`, () => readdirSync(dir).every((entry) => !entry.startsWith('worker-')), 10_000);
    }
  });
});
