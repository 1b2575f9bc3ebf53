/**
 * New connections spread over the workers (issue 16): one listening socket
 * per worker slot and the master's program on the group hand a burst from
 * one client to the workers in turn, where one shared socket let whichever
 * worker woke first take all of it (50/0 seen). A reload that changes
 * `workers` under load, up and down, fails no request, and the listening
 * sockets follow the worker count.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, TestServer, waitFor } from '../support/harness.js';
import { steadyLoad } from '../support/load.js';

/** Established connections to local `port` held by each of `pids` (/proc/net/tcp and each fd table). */
function connectionsOf(pids: readonly number[], port: number): number[] {
  const established = new Set<string>();
  for (const row of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const fields = row.trim().split(/\s+/);
    if (fields[3] === '01' && Number(`0x${fields[1]?.split(':')[1] ?? 'x'}`) === port && fields[9] !== undefined)
      established.add(fields[9]);
  }
  return pids.map((pid) => {
    let count = 0;
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode !== undefined && established.has(inode)) count += 1;
      } catch {
        // closed meanwhile
      }
    }
    return count;
  });
}

/** Sockets listening on local `port` (state 0A in /proc/net/tcp). */
function listeningSockets(port: number): number {
  return readFileSync('/proc/net/tcp', 'latin1')
    .split('\n')
    .slice(1)
    .filter((row) => {
      const fields = row.trim().split(/\s+/);
      return fields[3] === '0A' && Number(`0x${fields[1]?.split(':')[1] ?? 'x'}`) === port;
    }).length;
}

describe('spreading connections over the workers', () => {
  const server = new TestServer();
  let site: string;
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'spread\n');
    site = `[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`;
    await server.start(site);
  });
  after(() => server.stop());

  it('a burst of 50 connections from one client: 25 on each of the 2 workers', async () => {
    const workers = server.status().workers.map((worker) => worker.pid);
    const clients = await Promise.all(
      Array.from(
        { length: 50 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect(server.port, '127.0.0.1', () => resolve(socket));
            socket.on('error', reject);
          }),
      ),
    );
    try {
      const counts = await waitFor('every connection accepted', () => {
        const now = connectionsOf(workers, server.port);
        return now.reduce((a, b) => a + b, 0) === 50 ? now : null;
      });
      assert.deepEqual(counts, [25, 25]);
    } finally {
      for (const client of clients) client.destroy();
    }
  });

  it('reloads to 3, 1 and 2 workers under load fail no request; the listening sockets follow the worker count', async () => {
    const keptAlive = steadyLoad(server.port, 8);
    const fresh = steadyLoad(server.port, 4, false);
    for (const workers of [3, 1, 2]) {
      server.writeConfig(site, `workers = ${workers}`);
      const reloaded = cli(['reload', '-c', server.configFile]);
      assert.equal(reloaded.status, 0, reloaded.stderr);
      await waitFor(`${workers} workers ready`, () => {
        const status = server.status();
        return status.workers.filter((worker) => worker.state === 'ready').length === workers && status.workers.length === workers;
      });
      await waitFor(`${workers} listening sockets`, () => listeningSockets(server.port) === workers);
    }
    const [steady, each] = await Promise.all([keptAlive.stop(), fresh.stop()]);
    assert.deepEqual(steady.failed, [], `keep-alive requests (${steady.ok} served)`);
    assert.deepEqual(each.failed, [], `a connection per request (${each.ok} served)`);
    assert.ok(steady.ok > 0 && each.ok > 0);
  });
});
