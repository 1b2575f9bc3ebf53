/**
 * The security dashboard ([server.dashboard], issue 17) of a real server with
 * two sandboxed workers, from outside over HTTP: the token is required (401
 * for the page and the JSON), the login cookie's flags, failed logins held
 * back and audited with the client, every answer's headers, and the state
 * the master collects (the real worker pids and what /proc says of them).
 * The page itself, in Chromium: dashboard-browser.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, cli, freePort, rawRequest, readText, request, TestServer, waitFor, type Response } from '../support/harness.js';

const TOKEN = randomBytes(32).toString('hex');

interface DashboardState {
  master: { pid: number; generation: number };
  checklist: { id: string; status: string; why: string; key: string }[];
  workers: {
    pid: number;
    uid: number;
    state: string;
    seccomp: string;
    noNewPrivs: boolean;
    root: string;
    cgroup: { memoryMaxBytes: number };
  }[];
  auditEvents: Record<string, unknown>[];
  bans: { ip: string }[];
}

describe('dashboard over HTTP', () => {
  const server = new TestServer();
  const auditLog = path.join(server.dir, 'audit.log');
  let port = 0;
  const get = (urlPath: string, headers: Record<string, string> = {}, localAddress?: string, agent?: http.Agent): Promise<Response> =>
    request(port, { path: urlPath, headers, ...(localAddress !== undefined && { localAddress }), ...(agent !== undefined && { agent }) });
  const login = (token: string, headers: Record<string, string> = {}, localAddress?: string, agent?: http.Agent): Promise<Response> => {
    const body = new URLSearchParams({ token }).toString();
    return request(port, {
      path: '/login',
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': String(body.length), ...headers },
      body,
      ...(localAddress !== undefined && { localAddress }),
      ...(agent !== undefined && { agent }),
    });
  };
  const state = async (headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}` }): Promise<DashboardState> => {
    const response = await get('/api/state', headers);
    assert.equal(response.status, 200, response.body);
    return JSON.parse(response.body) as DashboardState;
  };

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    port = await freePort();
    server.launch = (argv) => ({ file: BIN, args: argv, env: { ...process.env, DASHBOARD_TOKEN: TOKEN } });
    await server.start(
      `[security.forwarded]\ntrust_proxy = true\ntrusted_proxies = ["127.0.0.9"]\n\n[security.audit]\nlog_file = "${auditLog}"\n\n` +
        `[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"`,
      `[server.dashboard]\nenabled = true\nlisten = "127.0.0.1:${port}"\ntoken = "\${DASHBOARD_TOKEN}"\n`,
    );
  });
  after(() => server.stop());

  it('answers 401 without the token: the page with the login form, the JSON with an error', async () => {
    const page = await get('/');
    assert.equal(page.status, 401);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['www-authenticate'], 'Bearer realm="miwidothttp dashboard"');
    assert.match(page.body, /<form method="post" action="\/login">/);
    assert.ok(!page.body.includes('id="workers"'), 'not the page');
    const json = await get('/api/state');
    assert.equal(json.status, 401);
    assert.match(String(json.headers['content-type']), /^application\/json/);
    assert.deepEqual(JSON.parse(json.body), { error: 'unauthorized' });
    assert.equal((await get('/api/state', { Authorization: `Bearer ${'0'.repeat(64)}` })).status, 401);
    assert.equal((await get('/api/state', { Authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` })).status, 401);
    assert.equal((await get('/api/state', { Cookie: `miwidothttp_dashboard=v1.9999999999999.${'0'.repeat(64)}` })).status, 401);
  });

  it('answers the JSON with the token: application/json, nosniff, the CSP; the real workers as /proc shows them', async () => {
    const response = await get('/api/state', { Authorization: `Bearer ${TOKEN}` });
    assert.equal(response.status, 200);
    assert.equal(response.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(response.headers['x-content-type-options'], 'nosniff');
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.match(String(response.headers['content-security-policy']), /default-src 'self'.*frame-ancestors 'none'/);
    const body = JSON.parse(response.body) as DashboardState;
    assert.equal(body.master.pid, server.masterPid());
    const pids = server
      .status()
      .workers.map((worker) => worker.pid)
      .sort();
    assert.deepEqual(body.workers.map((worker) => worker.pid).sort(), pids);
    const uids = new Map(server.status().workers.map((worker) => [worker.pid, worker.uid]));
    for (const worker of body.workers) {
      assert.equal(worker.uid, uids.get(worker.pid), 'the uid of its own that status shows');
      assert.equal(worker.seccomp, 'filter');
      assert.equal(worker.noNewPrivs, true);
      assert.equal(worker.root, server.dir);
      assert.equal(worker.cgroup.memoryMaxBytes, 512 * 1048576);
    }
    assert.equal(body.checklist.find((item) => item.id === 'isolation')?.status, 'green');
    assert.ok(!response.body.includes(TOKEN), 'the state never holds the token');
  });

  it('serves the page with the token, with its CSP and no framing', async () => {
    const page = await get('/', { Authorization: `Bearer ${TOKEN}` });
    assert.equal(page.status, 200);
    assert.match(page.body, /<table id="workers">/);
    assert.match(String(page.headers['content-security-policy']), /^default-src 'self';.*frame-ancestors 'none'/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    const script = await get('/app.js');
    assert.equal(script.status, 200);
    assert.equal(script.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(script.headers['x-content-type-options'], 'nosniff');
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await request(port, { path: '/', method: 'PUT' })).status, 405);
  });

  it('logs in through the form: an HttpOnly, SameSite=Strict cookie, Secure when a trusted proxy says HTTPS', async () => {
    const response = await login(TOKEN, { Origin: `http://127.0.0.1:${port}` });
    assert.equal(response.status, 303);
    assert.equal(response.headers.location, '/');
    const cookie = String(response.headers['set-cookie']);
    assert.match(cookie, /^miwidothttp_dashboard=v1\.\d+\.[0-9a-f]{64}; /);
    assert.match(cookie, /; HttpOnly/);
    assert.match(cookie, /; SameSite=Strict/);
    assert.doesNotMatch(cookie, /Secure/);
    assert.ok(!cookie.includes(TOKEN));
    const value = cookie.split(';', 1)[0]!;
    assert.equal((await state({ Cookie: value })).master.pid, server.masterPid());

    const proxied = await login(TOKEN, { 'X-Forwarded-Proto': 'https' }, '127.0.0.9');
    assert.match(String(proxied.headers['set-cookie']), /; Secure$/);
    const untrusted = await login(TOKEN, { 'X-Forwarded-Proto': 'https' }, '127.0.0.10');
    assert.doesNotMatch(String(untrusted.headers['set-cookie']), /Secure/);

    const out = await request(port, { path: '/logout', method: 'POST', headers: { Cookie: value } });
    assert.equal(out.status, 303);
    assert.match(String(out.headers['set-cookie']), /^miwidothttp_dashboard=; Max-Age=0/);
  });

  it('answers only to its address or localhost in Host (DNS rebinding), whatever the token', async () => {
    const noHost = await rawRequest(port, `GET /api/state HTTP/1.0\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    assert.match(noHost, /^HTTP\/1\.1 421 /, 'no Host at all');
    for (const host of ['rebind.evil.test', 'rebind.evil.test:9146', '127.0.0.1.evil.test']) {
      const response = await get('/api/state', { Host: host, Authorization: `Bearer ${TOKEN}` });
      assert.equal(response.status, 421, host);
      assert.equal((await login('wrong', { Host: host })).status, 421, 'no attempt is counted');
    }
    for (const host of [`127.0.0.1:${port}`, 'localhost:8000', 'LOCALHOST', '[::1]:9146'])
      assert.equal((await get('/api/state', { Host: host, Authorization: `Bearer ${TOKEN}` })).status, 200, host);
    // Through a trusted forwarding proxy, the name is the proxy's to check.
    assert.equal((await get('/api/state', { Host: 'dashboard.example.com', Authorization: `Bearer ${TOKEN}` }, '127.0.0.9')).status, 200);
  });

  it('ignores a login form sent from another site', async () => {
    const crossSite: Record<string, string>[] = [{ Origin: 'http://evil.test' }, { 'Sec-Fetch-Site': 'cross-site' }];
    for (const headers of crossSite) {
      const response = await login(TOKEN, headers);
      assert.equal(response.status, 403);
      assert.equal(response.headers['set-cookie'], undefined);
    }
  });

  it('holds back a client after its failed attempts (then even the right token), audits it by address, serves everyone else', async () => {
    // One kept-alive connection: one worker, which holds its share of the limit (3 of 5 with two workers).
    const attacker = '127.0.0.20';
    const pinned = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await login(`wrong-${i}`, {}, attacker, pinned)).status, 401);
      const locked = await login(TOKEN, {}, attacker, pinned);
      assert.equal(locked.status, 429, 'the right token is not even looked at');
      assert.match(String(locked.headers['retry-after']), /^[1-9][0-9]*$/);
      assert.equal(locked.headers['set-cookie'], undefined);
      assert.equal((await get('/api/state', { Authorization: `Bearer ${TOKEN}` }, attacker, pinned)).status, 429);
    } finally {
      pinned.destroy();
    }
    assert.equal((await get('/api/state', { Authorization: `Bearer ${TOKEN}` }, '127.0.0.21')).status, 200, 'another client');

    // A new connection each time, wherever the kernel puts it: at most 6 guesses get through, over both workers.
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await get('/api/state', { Authorization: `Bearer wrong${i}` }, '127.0.0.22')).status);
    const guesses = statuses.filter((status) => status === 401).length;
    assert.ok(guesses >= 3 && guesses <= 6, `${guesses} guesses let through: ${statuses}`);
    assert.ok(
      statuses.every((status) => status === 401 || status === 429),
      String(statuses),
    );

    const lines = await waitFor('the audit lines', () => {
      const events = readText(auditLog)
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((event) => event.clientIp === attacker);
      return events.some((event) => event.audit === 'auth.dashboard_locked') ? events : null;
    });
    const refused = lines.find((event) => event.audit === 'auth.dashboard_failed');
    assert.equal(refused?.category, 'authentication');
    assert.equal(refused?.status, 401);
    assert.ok(!JSON.stringify(lines).includes(TOKEN), 'the audit log never holds a token');
    // The dashboard shows the same events, with the same fields.
    await waitFor('the events on the dashboard', async () => {
      const shown = (await state()).auditEvents.filter((event) => event.clientIp === attacker).map((event) => event.event);
      return shown.includes('auth.dashboard_failed') && shown.includes('auth.dashboard_locked');
    });
  });

  it('closes connections past its cap, audited with the client, while the sites and the dashboard go on', async () => {
    const flood: net.Socket[] = [];
    try {
      // 64 per worker: 200 from one address fill both workers' share, whatever the kernel's split.
      for (let i = 0; i < 200; i++) {
        const socket = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.30' });
        socket.on('error', () => undefined);
        flood.push(socket);
      }
      await waitFor('the refusal in the audit log', () =>
        readText(auditLog)
          .split('\n')
          .some((line) => line.includes('"connection.limit_exceeded"') && line.includes('"127.0.0.30"') && line.includes('dashboard')),
      );
      assert.equal((await request(server.port, { path: '/' })).status, 200, 'the sites are served');
    } finally {
      for (const socket of flood) socket.destroy();
    }
    // Until the server has seen the flood close, a new connection may still be dropped.
    await waitFor(
      'the dashboard again',
      async () => (await get('/api/state', { Authorization: `Bearer ${TOKEN}` }).catch(() => null))?.status === 200,
    );
  });

  it('shows a ban added with the CLI', async () => {
    assert.equal(cli(['ban', 'add', '192.0.2.44', '-c', server.configFile]).status, 0);
    await waitFor('the ban in the state', async () => (await state()).bans.some((ban) => ban.ip === '192.0.2.44'));
  });

  it('is refused by check without a token, in one line', () => {
    const file = path.join(server.dir, 'no-token.toml');
    writeFileSync(file, `[server]\nstate_dir = "${server.stateDir}"\n[server.dashboard]\nenabled = true\n`);
    const result = cli(['check', '-c', file]);
    assert.equal(result.status, 1);
    assert.equal(result.stderr.trim().split('\n').length, 1);
    assert.match(result.stderr, /server\.dashboard\.token: required when the dashboard is enabled/);
  });
});
