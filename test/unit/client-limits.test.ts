/**
 * The master's limits per client (src/master/abuse/) and the worker's token
 * leases (src/worker/pipeline/access.ts), in process: exact counts, the
 * memory bound under a flood of distinct addresses, the ban list's file.
 * The same machinery is driven end to end in abuse.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { BanList, type BanChange } from '../../src/master/abuse/bans.js';
import { ClientLimits, type LimitSettings } from '../../src/master/abuse/client-limits.js';
import { UNLIMITED, type MasterPort } from '../../src/worker/master-link.js';
import { RequestTokens } from '../../src/worker/pipeline/access.js';

const quiet = pino({ level: 'silent' });

function settings(
  overrides: { perIp?: number; rate?: number; max?: number; rps?: number; burst?: number; banAfter?: number; tracked?: number } = {},
): LimitSettings {
  return {
    limits: {
      maxConnections: overrides.max ?? 1000,
      maxConnectionsPerIp: overrides.perIp ?? 3,
      connectionRatePerIp: overrides.rate ?? 1000,
      // A bucket of one second's worth, as these cases were written for.
      connectionBurstPerIp: overrides.rate ?? 1000,
    },
    rateLimit: overrides.rps === undefined ? null : { requestsPerSecond: overrides.rps, burst: overrides.burst ?? overrides.rps },
    access: { banAfterBreaches: overrides.banAfter ?? 0, breachWindowMs: 60_000, maxTrackedClients: overrides.tracked ?? 100_000 },
  };
}

describe('connection limits held by the master', () => {
  it('max_connections_per_ip counts across workers, and a closed connection frees its place', () => {
    const limits = new ClientLimits(settings({ perIp: 3 }), () => undefined);
    assert.equal(limits.connect(1, '192.0.2.1'), 'ok');
    assert.equal(limits.connect(2, '192.0.2.1'), 'ok');
    assert.equal(limits.connect(1, '192.0.2.1'), 'ok');
    assert.equal(limits.connect(2, '192.0.2.1'), 'max_connections_per_ip');
    assert.equal(limits.connect(2, '192.0.2.2'), 'ok', 'another client is not affected');
    limits.disconnect(2, '192.0.2.1');
    assert.equal(limits.connect(2, '192.0.2.1'), 'ok');
  });

  it('max_connections holds for the whole server', () => {
    const limits = new ClientLimits(settings({ max: 2, perIp: 10 }), () => undefined);
    assert.equal(limits.connect(1, '192.0.2.1'), 'ok');
    assert.equal(limits.connect(2, '192.0.2.2'), 'ok');
    assert.equal(limits.connect(1, '192.0.2.3'), 'max_connections');
    assert.equal(limits.openConnections, 2);
  });

  it('a worker that exits releases every connection it held; a confused worker cannot push counts below zero', () => {
    const limits = new ClientLimits(settings({ perIp: 2 }), () => undefined);
    limits.connect(1, '192.0.2.1');
    limits.connect(1, '192.0.2.1');
    limits.disconnect(2, '192.0.2.1'); // worker 2 never opened one
    assert.equal(limits.connect(2, '192.0.2.1'), 'max_connections_per_ip');
    limits.workerGone(1);
    assert.equal(limits.openConnections, 0);
    assert.equal(limits.connect(2, '192.0.2.1'), 'ok');
  });

  it('connection_rate_per_ip refuses the connection past the rate, then refills', async () => {
    let now = 0;
    const limits = new ClientLimits(
      settings({ rate: 5, perIp: 100 }),
      () => undefined,
      () => now,
    );
    const verdicts = Array.from({ length: 7 }, () => limits.connect(1, '192.0.2.9'));
    assert.deepEqual(verdicts, ['ok', 'ok', 'ok', 'ok', 'ok', 'connection_rate', 'connection_rate']);
    now += 400; // two tokens at 5 per second
    assert.equal(limits.connect(1, '192.0.2.9'), 'ok');
    assert.equal(limits.connect(1, '192.0.2.9'), 'ok');
    assert.equal(limits.connect(1, '192.0.2.9'), 'connection_rate');
  });

  it('breaches within the window call for a ban once', () => {
    const banned: string[] = [];
    const limits = new ClientLimits(settings({ perIp: 1, banAfter: 3 }), (ip) => banned.push(ip));
    limits.connect(1, '192.0.2.5');
    for (let i = 0; i < 6; i++) limits.connect(1, '192.0.2.5');
    assert.deepEqual(banned, ['192.0.2.5']);
  });

  it('a million distinct addresses leave the tables at their cap', () => {
    let now = 0;
    const limits = new ClientLimits(
      settings({ rate: 5, perIp: 100, rps: 10, tracked: 10_000, banAfter: 1_000_000 }),
      () => undefined,
      () => now,
    );
    for (let i = 0; i < 1_000_000; i++) {
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      limits.lease(ip, 1);
      limits.breach(ip, 1, 1);
      now += 0.001;
    }
    const tracked = limits.trackedClients;
    assert.ok(tracked.requestBuckets <= 10_000, `request buckets ${tracked.requestBuckets}`);
    assert.ok(tracked.breaches <= 10_000, `breach entries ${tracked.breaches}`);
    // Once refilled, a bucket says no more than a fresh one: the sweep drops it.
    now += 10_000;
    limits.sweep();
    assert.equal(limits.trackedClients.requestBuckets, 0);
  });
});

/** Two workers' token leases against one master, through a link that answers like the IPC channel (asynchronously). */
function linkTo(limits: ClientLimits): MasterPort {
  return {
    ...UNLIMITED,
    lease: (ip, want) => new Promise((resolve) => setImmediate(() => resolve(limits.lease(ip, want)))),
    report: (ip, unspent, refused) => {
      limits.giveBack(ip, unspent);
      limits.breach(ip, refused, 1);
    },
  };
}

describe('rate limiting with leases across workers', () => {
  it('two workers together grant burst + rate x time, within 10 %', async () => {
    const limits = new ClientLimits(settings({ rps: 50, burst: 50 }), () => undefined);
    const workers = [new RequestTokens(linkTo(limits)), new RequestTokens(linkTo(limits))];
    let allowed = 0;
    const started = performance.now();
    // Clients alternate between the workers as fast as the answers come, for 2 s.
    const client = async (worker: RequestTokens): Promise<void> => {
      while (performance.now() - started < 2000) {
        const verdict = await worker.take('198.51.100.7');
        if (verdict === 0) allowed += 1;
        else await sleep(Math.min(verdict, 5));
      }
    };
    await Promise.all([client(workers[0]!), client(workers[1]!), client(workers[0]!), client(workers[1]!)]);
    const elapsed = (performance.now() - started) / 1000;
    for (const worker of workers) worker.close();
    const expected = 50 + 50 * elapsed;
    assert.ok(Math.abs(allowed - expected) <= expected * 0.1, `allowed ${allowed}, expected ${expected.toFixed(0)} +- 10 %`);
  });

  it('tokens a worker leased and did not spend go back to the master', async () => {
    const limits = new ClientLimits(settings({ rps: 0.01, burst: 16 }), () => undefined);
    const first = new RequestTokens(linkTo(limits));
    const second = new RequestTokens(linkTo(limits));
    // The first worker spends quickly, so its lease grows (to at most 2: 1/8 of the burst).
    for (let i = 0; i < 6; i++) assert.equal(await first.take('203.0.113.3'), 0);
    await sleep(700); // past the lease's life: the unspent rest is returned
    let allowed = 0;
    for (let i = 0; i < 20; i++) if ((await second.take('203.0.113.3')) === 0) allowed += 1;
    assert.equal(allowed, 10, 'the second worker gets the whole rest of the burst');
    first.close();
    second.close();
  });
});

describe('the ban list', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-bans-'));

  it('persists root-only (batched, in the background), survives a reload of the file, extends and expires', async () => {
    const file = path.join(tmp, 'state', 'bans.json');
    const changes: BanChange[] = [];
    const bans = new BanList(file, 100, quiet, (change) => changes.push(change));
    bans.load();
    bans.add('192.0.2.77', 1, 'admin', 'test');
    assert.equal(existsSync(file), false, 'no write on the ban itself: the file is written in the background');
    await bans.flush();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const again = new BanList(file, 100, quiet, () => undefined);
    again.load();
    assert.deepEqual(
      again.list().map((ban) => ban.ip),
      ['192.0.2.77'],
    );
    assert.ok(again.isBanned('192.0.2.77'));
    await sleep(1200);
    assert.equal(bans.isBanned('192.0.2.77'), false);
    await waitFor(() => changes.length === 2);
    assert.deepEqual(
      changes.map((change) => change.kind),
      ['add', 'lift'],
    );
    await bans.flush();
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).bans, [], 'the expiry is written back');
    bans.close();
    again.close();
  });

  it('3,000 bans cost one write and no waiting on the disk; the table stops at max_bans with one notice', async () => {
    const file = path.join(tmp, 'many', 'bans.json');
    const changes: BanChange[] = [];
    const bans = new BanList(file, 2000, quiet, (change) => changes.push(change));
    bans.load();
    const started = performance.now();
    let refused = 0;
    for (let i = 0; i < 3000; i++)
      if (bans.add(`10.1.${i >> 8}.${i & 255}`, 60, 'limits', 'test', { slot: 0, pid: 1, generation: 1, uid: 2 }) === null) refused++;
    const spentMs = performance.now() - started;
    assert.ok(spentMs < 2000, `3,000 bans took ${spentMs.toFixed(0)} ms of the event loop`);
    assert.equal(bans.size, 2000);
    assert.equal(refused, 1000);
    assert.equal(changes.filter((change) => change.kind === 'full').length, 1, 'one notice when the table is full');
    await bans.flush();
    const written = JSON.parse(readFileSync(file, 'utf8')) as { bans: { ip: string; worker?: { slot: number } }[] };
    assert.equal(written.bans.length, 2000);
    assert.deepEqual(written.bans[0]!.worker, { slot: 0, pid: 1, generation: 1, uid: 2 }, 'each ban names the worker that caused it');
    assert.ok(bans.remove('10.1.0.0', 'revoked'));
    assert.ok(bans.add('10.9.9.9', 60, 'admin', 'room again') !== null);
    bans.close();
  });

  it('a damaged file is set aside and the server starts without it', () => {
    const file = path.join(tmp, 'damaged.json');
    writeFileSync(file, '{"version":1,"bans":[{"ip":"not an ip","until":1}]}');
    const bans = new BanList(file, 100, quiet, () => undefined);
    bans.load();
    assert.deepEqual(bans.list(), []);
    assert.equal(existsSync(file), false);
    bans.close();
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await sleep(50);
}
