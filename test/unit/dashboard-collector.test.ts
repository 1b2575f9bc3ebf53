/**
 * The master's dashboard collector (src/master/dashboard/): what it
 * remembers (traffic by status class, refused clients, the last events),
 * that its memory stays bounded, that its answer fits the message cap, and
 * that DASH_QUERY is answered only when and as often as the catalogue allows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { MAX_DASHBOARD_STATE_BYTES, type MasterMessage } from '../../src/ipc/messages.js';
import type { AuditEntry } from '../../src/master/audit-log.js';
import { DashboardCollector, type DashboardSources } from '../../src/master/dashboard/collector.js';
import { HISTORY_MS, isRefusal, RefusalTally, refusalCount, TrafficHistory } from '../../src/master/dashboard/history.js';

const T0 = Date.parse('2026-06-01T12:00:00Z');

const entry = (fields: Record<string, unknown>, time = new Date().toISOString()): AuditEntry => ({ time, fields });

describe('traffic history', () => {
  it('keeps what each interval added, by status class, for 15 minutes', () => {
    const history = new TrafficHistory(T0);
    history.sample(
      T0 + 5000,
      new Map([
        [200, 10],
        [404, 2],
      ]),
    );
    history.sample(
      T0 + 10_000,
      new Map([
        [200, 25],
        [404, 2],
        [503, 1],
        [101, 1],
      ]),
    );
    assert.deepEqual(
      history.buckets().map((bucket) => [bucket.seconds, bucket.classes]),
      [
        [5, [0, 10, 0, 2, 0]],
        [5, [1, 15, 0, 0, 1]],
      ],
    );
    history.sample(T0 + HISTORY_MS + 5000, new Map([[200, 25]]));
    assert.equal(history.buckets().length, 2, 'the first interval fell out of the window');
  });
});

describe('refused clients', () => {
  it('counts refusals per client over 15 minutes, most refused first', () => {
    const tally = new RefusalTally();
    tally.add('192.0.2.1', 3, 'connection.banned', T0);
    tally.add('192.0.2.2', 5, 'request.rate_limited', T0 + 1000);
    tally.add('192.0.2.1', 4, 'request.ids_blocked', T0 + 61_000);
    const { clients } = tally.top(10, T0 + 62_000);
    assert.deepEqual(
      clients.map((client) => [client.ip, client.count, client.lastEvent]),
      [
        ['192.0.2.1', 7, 'request.ids_blocked'],
        ['192.0.2.2', 5, 'request.rate_limited'],
      ],
    );
    assert.deepEqual(
      tally.top(10, T0 + HISTORY_MS + 30_000).clients.map((client) => [client.ip, client.count]),
      [['192.0.2.1', 4]],
      'the first minute is out of the window',
    );
  });

  it('counts a flood of distinct clients past its cap together, in bounded memory', () => {
    const tally = new RefusalTally();
    for (let i = 0; i < 50_000; i++) tally.add(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, 1, 'connection.blacklisted', T0);
    const { clients, untracked } = tally.top(10, T0);
    assert.equal(clients.length, 10);
    assert.equal(untracked, 40_000);
  });

  it('knows a refusal from a routine answer, and reads the count of a throttled audit line', () => {
    for (const event of ['connection.banned', 'request.rate_limited', 'proxy_protocol.untrusted', 'auth.dashboard_failed'])
      assert.equal(isRefusal(event), true, event);
    for (const event of ['request.not_found', 'ids.match', 'config.reload', 'admin.ban_add']) assert.equal(isRefusal(event), false, event);
    assert.equal(refusalCount(entry({ detail: 'connection_rate (11 more in the last second not logged)' })), 12);
    assert.equal(refusalCount(entry({ detail: 'connection_rate' })), 1);
    assert.equal(refusalCount(entry({})), 1);
  });
});

function sources(overrides: Partial<DashboardSources> = {}): DashboardSources {
  const loaded = loadConfig(null);
  assert.ok(loaded.ok);
  const dashboard = { address: '127.0.0.1', port: 9146, tokenSha256: '0'.repeat(64), sessionKey: '0'.repeat(64) };
  const config = { ...loaded.config, server: { ...loaded.config.server, dashboard } };
  return {
    config: () => config,
    generation: () => 1,
    workers: () => Promise.resolve([]),
    bans: () => [],
    certificates: () => [],
    certificateError: () => null,
    statusTotals: () => Promise.resolve(new Map()),
    openConnections: () => 0,
    auditLogFailing: () => false,
    ...overrides,
  };
}

describe('the collector', () => {
  it('shows the last 100 events with the audit log fields, IDS events apart, and the last reload', async () => {
    const collector = new DashboardCollector(sources());
    try {
      for (let i = 0; i < 150; i++)
        collector.recordAudit(
          entry({ audit: 'request.bad_path', category: 'security', status: 400, clientIp: '192.0.2.9', path: `/p${i}` }),
        );
      collector.recordAudit(entry({ audit: 'ids.alert', category: 'security', clientIp: '192.0.2.9', detail: 'score 20' }));
      collector.recordAudit(entry({ audit: 'config.reload_refused', category: 'configuration', detail: 'x.toml: bad key' }));
      const state = JSON.parse(await collector.state()) as Record<string, unknown>;
      const events = state.auditEvents as Record<string, unknown>[];
      assert.equal(events.length, 100);
      assert.equal(events[0]!.event, 'config.reload_refused');
      assert.equal(events[2]!.path, '/p149');
      assert.deepEqual(
        (state.idsAlerts as Record<string, unknown>[]).map((event) => event.event),
        ['ids.alert'],
      );
      assert.deepEqual(state.lastReload, {
        at: (state.lastReload as { at: string }).at,
        ok: false,
        generation: null,
        detail: 'x.toml: bad key',
      });
      assert.deepEqual(
        (state.refusedClients as { ip: string; count: number }[]).map((client) => [client.ip, client.count]),
        [['192.0.2.9', 150]],
      );
    } finally {
      collector.close();
    }
  });

  it('tallies no refused clients while the dashboard is off', async () => {
    const off = sources();
    const collector = new DashboardCollector({
      ...off,
      config: () => ({ ...off.config(), server: { ...off.config().server, dashboard: null } }),
    });
    try {
      collector.recordAudit(entry({ audit: 'connection.banned', clientIp: '192.0.2.9' }));
      const state = JSON.parse(await collector.state()) as { refusedClients: unknown[]; auditEvents: unknown[] };
      assert.deepEqual(state.refusedClients, []);
      assert.equal(state.auditEvents.length, 1);
    } finally {
      collector.close();
    }
  });

  it('stays under the message cap however large the events', async () => {
    const collector = new DashboardCollector(sources());
    try {
      const huge = 'x'.repeat(512);
      const headers = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`h${i}`, huge]));
      for (let i = 0; i < 100; i++)
        collector.recordAudit(
          entry({ audit: 'ids.match', clientIp: '192.0.2.1', host: huge, path: huge, detail: huge, method: huge, headers }),
        );
      const json = await collector.state();
      assert.ok(Buffer.byteLength(json) <= MAX_DASHBOARD_STATE_BYTES, `${Buffer.byteLength(json)} bytes`);
      const state = JSON.parse(json) as { auditEvents: { path: string }[] };
      assert.ok(state.auditEvents.length > 0);
      assert.ok(state.auditEvents[0]!.path.length <= 301, 'strings are clipped');
    } finally {
      collector.close();
    }
  });

  it('answers one DASH_QUERY per worker at a time, and only from a worker with a dashboard listener', async () => {
    let release: () => void = () => undefined;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const collector = new DashboardCollector(sources({ workers: () => slow.then(() => []) }));
    try {
      const posted: MasterMessage[] = [];
      const violations: string[] = [];
      const link = { id: 7, pid: 1234, generation: 1, post: (message: MasterMessage) => posted.push(message) };
      const violation = (why: string): number => violations.push(why);

      collector.query(link, 1, false, violation);
      assert.match(violations[0] ?? '', /without a dashboard listener/);

      collector.query(link, 2, true, violation);
      collector.query(link, 3, true, violation);
      assert.match(violations[1] ?? '', /previous one was unanswered/);
      collector.query({ ...link, id: 8 }, 4, true, violation);
      assert.equal(violations.length, 2, 'another worker may ask meanwhile');

      release();
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(
        posted.map((message) => [message.type, (message as { id: number }).id]),
        [
          ['DASH_STATE', 2],
          ['DASH_STATE', 4],
        ],
      );
      collector.query(link, 5, true, violation);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(violations.length, 2, 'answered, the worker may ask again');
      assert.equal(posted.length, 3);
    } finally {
      collector.close();
    }
  });

  it('samples the totals into the chart', async () => {
    let total = 0;
    const collector = new DashboardCollector(sources({ statusTotals: () => Promise.resolve(new Map([[200, (total += 7)]])) }), 20);
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const state = JSON.parse(await collector.state()) as { traffic: { buckets: { classes: number[] }[] } };
      assert.ok(state.traffic.buckets.length >= 2);
      assert.ok(state.traffic.buckets.every((bucket) => bucket.classes[1] === 7));
    } finally {
      collector.close();
    }
  });
});
