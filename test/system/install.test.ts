/**
 * `npm run install-system` / `uninstall-system` (issue 7, item 5), into
 * temporary directories with a user of its own: the installed tree serves
 * with a uid per worker in that user's group, the unit passes `systemd-analyze verify`, and the uninstall
 * leaves no process, cgroup, unit or user behind.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { WORKER_UID_SPAN } from '../../src/isolation/worker-uids.js';
import { freePort, isRunning, request, ROOT, TestServer, waitFor } from '../support/harness.js';

/** The default [process.isolation] worker_uid_base. */
const WORKER_UID_BASE = 2_000_000_000;

const USER = 'miwidothttp-it';

function userId(name: string): number | null {
  const result = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  return result.status === 0 ? Number(result.stdout.trim()) : null;
}

/** Directories named like a cgroup of `masterPid`'s workers, in any hierarchy. */
function workerCgroups(masterPid: number): string[] {
  const found: string[] = [];
  for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
    const parent = path.join('/sys/fs/cgroup', hierarchy, 'miwidothttp.slice');
    if (!existsSync(parent)) continue;
    for (const entry of readdirSync(parent)) if (entry.startsWith(`worker-${masterPid}-`)) found.push(path.join(parent, entry));
  }
  return found;
}

describe('install and uninstall', () => {
  const scratch = new TestServer();
  const dirs = {
    PREFIX: path.join(scratch.dir, 'opt/miwidothttp'),
    CONFDIR: path.join(scratch.dir, 'etc/miwidothttp'),
    STATEDIR: path.join(scratch.dir, 'var/lib/miwidothttp'),
    WWWDIR: path.join(scratch.dir, 'var/www/miwidothttp'),
    UNITDIR: path.join(scratch.dir, 'etc/systemd/system'),
    RUNDIR: path.join(scratch.dir, 'run/miwidothttp'),
  };
  const env = { ...process.env, ...dirs, SERVICE_USER: USER, BIND_ADDRESS: '127.0.0.1' };
  after(async () => {
    spawnSync(path.join(ROOT, 'scripts/uninstall-system.sh'), { env: { ...env, PURGE: '1' } });
    await scratch.stop();
  });

  it('installs a tree that serves as its own user, and uninstalls without a trace', async () => {
    const port = await freePort();
    const install = spawnSync(path.join(ROOT, 'scripts/install-system.sh'), { env: { ...env, HTTP_PORT: String(port) }, encoding: 'utf8' });
    assert.equal(install.status, 0, install.stderr);
    const uid = userId(USER);
    assert.notEqual(uid, null, 'the service user exists');
    const cli = path.join(dirs.PREFIX, 'bin/miwidothttp');
    assert.equal(statSync(cli).uid, 0);
    assert.equal(statSync(dirs.PREFIX).mode & 0o022, 0, 'the program is writable by root only');
    assert.equal(statSync(dirs.STATEDIR).mode & 0o777, 0o700);
    const unit = readFileSync(path.join(dirs.UNITDIR, 'miwidothttp.service'), 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${dirs.PREFIX}/bin/miwidothttp start -c ${dirs.CONFDIR}/miwidothttp.toml$`, 'm'));
    const verify = spawnSync('systemd-analyze', ['verify', path.join(dirs.UNITDIR, 'miwidothttp.service')], { encoding: 'utf8' });
    assert.equal(`${verify.stdout}${verify.stderr}`.trim(), '', 'systemd-analyze verify is clean');

    const config = path.join(dirs.CONFDIR, 'miwidothttp.toml');
    const master = spawn(cli, ['start', '-c', config], { stdio: 'ignore' });
    const response = await waitFor('the installed server', () => request(port, { path: '/' }).catch(() => null), 20_000);
    assert.equal(response.status, 200);
    const status = JSON.parse(spawnSync(cli, ['status', '-c', config, '--json'], { encoding: 'utf8' }).stdout) as {
      workers: { pid: number; uid: number }[];
    };
    const gid = Number(spawnSync('id', ['-g', USER], { encoding: 'utf8' }).stdout.trim());
    assert.ok(status.workers.length > 0, 'workers run');
    assert.equal(new Set(status.workers.map((worker) => worker.uid)).size, status.workers.length, 'each worker has a uid of its own');
    for (const worker of status.workers) {
      assert.ok(
        worker.uid >= WORKER_UID_BASE && worker.uid < WORKER_UID_BASE + WORKER_UID_SPAN,
        `uid ${worker.uid} from the workers' range`,
      );
      assert.notEqual(worker.uid, uid, "not the service user's own uid");
      assert.match(
        readFileSync(`/proc/${worker.pid}/status`, 'utf8'),
        new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, 'm'),
        "in the service user's group",
      );
    }
    const workerPids = status.workers.map((worker) => worker.pid);

    const uninstall = spawnSync(path.join(ROOT, 'scripts/uninstall-system.sh'), { env, encoding: 'utf8' });
    assert.equal(uninstall.status, 0, uninstall.stderr);
    await waitFor('the master to exit', () => master.exitCode !== null || master.signalCode !== null || undefined);
    assert.ok(
      workerPids.every((pid) => !isRunning(pid)),
      'no worker left',
    );
    assert.deepEqual(workerCgroups(master.pid!), [], 'no worker cgroup left');
    assert.equal(userId(USER), null, 'the user is gone');
    assert.equal(existsSync(dirs.PREFIX), false);
    assert.equal(existsSync(path.join(dirs.UNITDIR, 'miwidothttp.service')), false);
    assert.ok(existsSync(config), 'the config stays without PURGE=1');
  });
});
