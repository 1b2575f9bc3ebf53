/**
 * The security dashboard in a real browser (issue 17): Debian's headless
 * Chromium loads the page through the real server (bin/miwidothttp start,
 * two sandboxed workers) and every assertion reads the rendered DOM: the
 * login form without the token, the real worker pids, a ban added with
 * `miwidothttp ban add` showing up at the next refresh, an IDS alert
 * caused by a request, markup in a request shown as text, and a phone's
 * width. Screenshots go to a directory the test names and keeps.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Browser, type Page } from '../support/browser.js';
import { TestCa } from '../support/test-ca.js';
import { toPalettePng } from '../support/png.js';
import { BIN, cli, freePort, rawRequest, request, tempDir, TestServer } from '../support/harness.js';

const TOKEN = randomBytes(32).toString('hex');
/** What the page does at most between two looks at the state (app.js polls every 3 s; the answer is at most 2 s old). */
const REFRESH_DEADLINE_MS = 20_000;
/** Markup an attacker puts in a path: it would run if the page ever parsed data as HTML (innerHTML runs onerror, not <script>). */
const HOSTILE_PATH = '/<img/src/onerror=window.__pwned=1>';

/** The texts of one column of a table of the page. */
const column = (table: string, index: number): string =>
  `[...document.querySelectorAll('#${table} tbody tr')].map((row) => row.cells[${index}]?.textContent ?? '')`;

describe('dashboard in Chromium', () => {
  const server = new TestServer();
  const screenshots = tempDir('miwidothttp-dashboard-screenshots-');
  let browser: Browser;
  let page: Page;
  let port = 0;
  const url = (urlPath: string): string => `http://127.0.0.1:${port}${urlPath}`;

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    port = await freePort();
    server.launch = (argv) => ({ file: BIN, args: argv, env: { ...process.env, DASHBOARD_TOKEN: TOKEN } });
    // A certificate for the HTTPS listener, so the page shows one (and the TLS items of the checklist).
    const leaf = new TestCa(server.dir).issue('site', ['dashboard.test']);
    await server.start(
      `[ssl.domains."dashboard.test"]\ncert_file = "${leaf.cert}"\nkey_file = "${leaf.key}"\n\n` +
        `[security.ids]\nenabled = true\nalert_threshold = 1\nblock_threshold = 1000\n\n` +
        `[security.audit]\nlog_file = "${path.join(server.dir, 'audit.log')}"\n\n[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"`,
      `https_port = ${await freePort()}\n[server.dashboard]\nenabled = true\nlisten = "127.0.0.1:${port}"\ntoken = "\${DASHBOARD_TOKEN}"\n`,
    );
    browser = await Browser.launch(screenshots);
    page = await browser.newPage();
    await page.viewport(1200, 900);
  });
  after(async () => {
    await browser?.close();
    await server.stop();
  });

  it('without the token, the page is the login form (401) and the JSON is 401', async () => {
    await page.goto(url('/'));
    assert.equal(await page.evaluate(`performance.getEntriesByType('navigation')[0].responseStatus`), 401);
    assert.equal(await page.evaluate(`document.querySelector('form input#token') !== null`), true);
    assert.equal(await page.evaluate(`document.getElementById('workers')`), null);
    assert.equal(await page.evaluate(`fetch('/api/state').then((response) => response.status)`), 401);
  });

  it('logs in with the form and shows the real worker pids', async () => {
    await page.type('#token', TOKEN);
    const loaded = browser.waitForEvent('Page.loadEventFired', page.sessionId);
    await page.evaluate(`document.querySelector('button[type=submit]').click()`);
    await loaded;
    assert.equal(await page.evaluate('location.pathname'), '/');
    assert.equal(await page.evaluate('document.cookie'), '', 'the login cookie is HttpOnly');
    const pids = server
      .status()
      .workers.map((worker) => String(worker.pid))
      .sort();
    const shown = await page.waitFor<string[]>(
      'the worker table',
      `(() => { const pids = ${column('workers', 0)}.sort(); return pids.join() === ${JSON.stringify(pids.join())} && pids; })()`,
    );
    assert.deepEqual(shown, pids);
    // In the order the table shows the pids: each worker's own uid, as status reports it.
    const uidOf = new Map(server.status().workers.map((worker) => [String(worker.pid), String(worker.uid)]));
    const shownPids = await page.evaluate<string[]>(`${column('workers', 0)}`);
    assert.deepEqual(
      await page.evaluate(`${column('workers', 1)}`),
      shownPids.map((pid) => uidOf.get(pid)),
      'a uid of its own',
    );
    assert.deepEqual(await page.evaluate(`${column('workers', 7)}`), ['filter', 'filter'], 'seccomp');
    const isolation = await page.evaluate<string[]>(
      `[...[...document.querySelectorAll('#checklist li')].find((item) => item.querySelector('strong').textContent === 'Process isolation').children].map((part) => part.textContent)`,
    );
    assert.equal(isolation[0], 'green');
    assert.match(isolation[2]!, /^2 workers as uid \d+, \d+, seccomp filter/);
  });

  it('shows a ban added with `miwidothttp ban add` at the next refresh, without reloading the page', async () => {
    await page.evaluate('window.sameDocument = true');
    assert.equal(cli(['ban', 'add', '192.0.2.77', '--seconds', '600', '-c', server.configFile]).status, 0);
    await page.waitFor('the ban', `${column('bans', 0)}.includes('192.0.2.77')`, REFRESH_DEADLINE_MS);
    assert.equal(await page.evaluate('window.sameDocument'), true, 'the poll showed it, not a reload');
    const row = await page.evaluate<string[]>(
      `[...[...document.querySelectorAll('#bans tbody tr')].find((row) => row.cells[0].textContent === '192.0.2.77').cells].map((cell) => cell.textContent)`,
    );
    assert.match(row[1]!, /^in (9|10) min \(/);
    assert.equal(row[2], 'admin');
  });

  it("shows the IDS alert a request caused, and a hostile request's markup as text", async () => {
    // Raw markup in a path never reaches the IDS any more (reject_invalid_characters: 400), but it is audited as sent.
    const hostile = await rawRequest(server.port, `GET ${HOSTILE_PATH} HTTP/1.1\r\nHost: dashboard.test\r\nConnection: close\r\n\r\n`);
    assert.match(hostile, /^HTTP\/1\.1 400 /, 'refused before the IDS');
    // What the IDS sees: the same markup percent-encoded in a query, decoded by the IDS.
    const encoded = await rawRequest(
      server.port,
      `GET /?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E HTTP/1.1\r\nHost: dashboard.test\r\nConnection: close\r\n\r\n`,
    );
    assert.match(encoded, /^HTTP\/1\.1 403 /, 'the IDS blocked it');
    await page.waitFor('the IDS alert', `${column('ids', 1)}.includes('ids.alert')`, REFRESH_DEADLINE_MS);
    await page.waitFor('the hostile path', `${column('audit', 5)}.includes(${JSON.stringify(HOSTILE_PATH)})`, REFRESH_DEADLINE_MS);
    // Shown as those characters: the cell holds text, no element was made of it, nothing ran.
    assert.equal(await page.evaluate(`document.querySelectorAll('main img, main b, main script').length`), 0);
    assert.equal(await page.evaluate('window.__pwned'), undefined);
    const cell = await page.evaluate<string>(
      `[...document.querySelectorAll('#audit td')].find((td) => td.textContent === ${JSON.stringify(HOSTILE_PATH)}).innerHTML`,
    );
    assert.equal(cell, '/&lt;img/src/onerror=window.__pwned=1&gt;');
  });

  it('takes a screenshot of the page', async (t) => {
    // Some traffic for the chart: pages, a few missing ones.
    await Promise.all(Array.from({ length: 60 }, (_, i) => request(server.port, { path: i % 6 === 0 ? '/missing' : '/' })));
    await page.waitFor(
      'the traffic',
      `Number(/(\\d+) in the window/.exec(document.getElementById('traffic-summary').textContent)?.[1]) >= 60`,
      REFRESH_DEADLINE_MS,
    );
    await page.viewport(1000, 1300);
    await page.waitFor('the layout at this width', `document.documentElement.scrollWidth <= window.innerWidth`, 5000);
    const file = path.join(screenshots, 'dashboard.png');
    await page.screenshot(file);
    // docs/dashboard.png: the first screen of it, in 256 colours.
    const top = path.join(screenshots, 'dashboard-top.png');
    await page.screenshot(top, false);
    const small = path.join(screenshots, 'dashboard-top-256.png');
    writeFileSync(small, toPalettePng(readFileSync(top)));
    assert.ok(statSync(small).size < statSync(top).size);
    t.diagnostic(`screenshots: ${file}, ${small}`);
    await page.viewport(1200, 900);
  });

  it('reads on a phone: one column, no sideways scrolling', async () => {
    await page.viewport(390, 844, true);
    await page.waitFor('the layout', `document.documentElement.scrollWidth <= window.innerWidth`, 5000);
    const [left, right] = await page.evaluate<number[]>(
      `['#checklist-section', '#workers'].map((selector) => document.querySelector(selector).closest('section').getBoundingClientRect().left)`,
    );
    assert.equal(left, right, 'sections are stacked');
    await page.screenshot(path.join(screenshots, 'dashboard-phone.png'));
    await page.viewport(1200, 900);
  });

  it('logs out: the JSON answers 401 again', async () => {
    const loaded = browser.waitForEvent('Page.loadEventFired', page.sessionId);
    await page.evaluate(`document.querySelector('header form button').click()`);
    await loaded;
    assert.equal(await page.evaluate('location.pathname'), '/login');
    assert.equal(await page.evaluate(`fetch('/api/state').then((response) => response.status)`), 401);
  });
});
